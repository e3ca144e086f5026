"""The report's chart: location-based emissions per UTC day by zone, avoided emissions as a line.

Drawn with matplotlib's object API (no pyplot: thread-safe, no global state) on the Agg canvas, so
``GET /report?format=png`` can render it in a worker thread. With ``include_provisional`` the
estimates of pods awaiting accounting are stacked on top as one hatched series.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import pandas as pd

from carbon.accounting.report_frames import PROVISIONAL, aggregate
from carbon.accounting.report_options import ReportOptions

PROVISIONAL_LABEL = "provisional (estimated)"


def plot_png(conn: Any, opts: ReportOptions, now: float | None = None) -> bytes:
    """Stacked bars of location-based emissions per UTC day by zone, avoided emissions as a line."""
    import matplotlib
    from matplotlib.figure import Figure

    daily = aggregate(conn, dataclasses.replace(opts, group_by=("day", "zone"), format="csv"), now)
    if PROVISIONAL in daily:
        daily = daily.assign(
            series=daily["zone"].where(~daily[PROVISIONAL].astype(bool), PROVISIONAL_LABEL)
        )
        accounted = daily[~daily[PROVISIONAL].astype(bool)]
    else:
        daily, accounted = daily.assign(series=daily["zone"]), daily
    fig = Figure(figsize=(10, 4.8), dpi=100)
    ax = fig.subplots()
    if daily.empty:
        ax.text(0.5, 0.5, "no accounted runs in this period", ha="center", va="center")
    else:
        wide = daily.pivot_table(
            index="day", columns="series", values="co2e_location_kg", aggfunc="sum"
        ).fillna(0.0)
        if PROVISIONAL_LABEL in wide:  # estimates on top of the accounted zones
            wide = wide[[c for c in wide.columns if c != PROVISIONAL_LABEL] + [PROVISIONAL_LABEL]]
        days = pd.date_range(wide.index.min(), wide.index.max(), freq="D").strftime("%Y-%m-%d")
        wide = wide.reindex(days, fill_value=0.0)  # days without runs stay visible as gaps
        avoided = accounted.groupby("day")["avoided_kg"].sum().reindex(days).fillna(0.0)
        x = np.arange(len(wide.index))
        bottom = np.zeros(len(x))
        cmap = matplotlib.colormaps["tab20"]
        for n, series in enumerate(wide.columns):
            values = wide[series].to_numpy(dtype=float)
            label, color = str(series) or "(no zone)", cmap(n % 20)
            style: dict[str, Any] = {"label": label, "color": color}
            if series == PROVISIONAL_LABEL:
                style = {"label": label, "color": "lightgrey", "hatch": "//", "edgecolor": "grey"}
            if len(x) <= 62:  # bars while they stay readable, steps (one polygon) beyond
                ax.bar(x, values, bottom=bottom, width=0.8, **style)
            else:
                ax.fill_between(x, bottom, bottom + values, step="mid", linewidth=0, **style)
            bottom = bottom + values
        ax.plot(
            x,
            avoided.to_numpy(dtype=float),
            "k.-" if len(x) <= 62 else "k-",
            label="avoided vs carbon-unaware",
        )
        ax.axhline(0.0, color="grey", linewidth=0.5)
        step = max(1, len(x) // 15)
        ax.set_xticks(x[::step], [str(d) for d in wide.index[::step]], rotation=45, ha="right")
        ax.set_xlim(-0.6, len(x) - 0.4)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_ylabel("kgCO2e (location-based)")
    ax.set_title("Emissions per day by zone, with avoided emissions")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
