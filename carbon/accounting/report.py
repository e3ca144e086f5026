"""Sustainability reports from the ledger: grouped exports (CSV, Parquet, JSON), SCI, a PNG chart.

Aggregation runs in SQLite (``GROUP BY`` over the ``usage`` table, indexed by run start), so a
million accounted pods report in seconds; pandas/pyarrow only shape and write the result. A run is
attributed to the period and the UTC day in which it *started*. Inventory columns
(``energy_kwh``, ``co2e_location_kg``, ``co2e_market_kg``, ``embodied_kg``) and the scheduling
effect (``counterfactual_kg``, ``avoided_kg``) are separate columns and never summed together.

SCI follows the Green Software Foundation's Software Carbon Intensity specification
(ISO/IEC 21031:2024): ``SCI = (E x I + M) / R`` with E the energy (kWh), I the location-based
intensity (energy-weighted mean, gCO2e/kWh; the specification excludes market-based measures),
M the embodied emissions (gCO2e) and R the functional unit (a job, a pod or a GPU-hour).
"""

from __future__ import annotations

import io
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from carbon.accounting.ledger import open_reader
from carbon.clock import wall

GROUP_KEYS: tuple[str, ...] = ("pod", "namespace", "class", "zone", "node", "day", "job")
FORMATS: tuple[str, ...] = ("csv", "parquet", "json", "sci", "png")
SCI_UNITS: tuple[str, ...] = ("job", "pod", "gpu-hour")
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "sci": "application/json",
    "png": "image/png",
}

# group key -> SQL expression over the usage table
_KEY_SQL: dict[str, str] = {
    "pod": "uid",
    "namespace": "namespace",
    "class": "workload_class",
    "zone": "COALESCE(zone, '')",
    "node": "node",
    "day": "day",
    "job": "job",
}
SUM_COLUMNS: tuple[str, ...] = (
    "gpu_hours",
    "energy_kwh",
    "co2e_location_kg",
    "co2e_market_kg",
    "embodied_kg",
    "counterfactual_kg",
    "avoided_kg",
)
COUNTERFACTUAL_DEFINITION = (
    "counterfactual_kg: location-based emissions scaled by the ratio of the mean expected "
    "emissions over all feasible candidate nodes (a carbon-unaware scheduler's average choice) to "
    "the expected emissions on the chosen node, and for gated pods by the expected intensity when "
    "first held over that at release; avoided_kg = counterfactual_kg - co2e_location_kg."
)


class ReportError(ValueError):
    """Bad report options (names the option and the fix)."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """Validated report options shared by the CLI and ``GET /report``."""

    start: float | None = None  # epoch seconds, inclusive (run start)
    end: float | None = None  # epoch seconds, exclusive
    group_by: tuple[str, ...] = ("namespace",)
    format: str = "csv"
    sci_unit: str = "job"

    def __post_init__(self) -> None:
        if not self.group_by:
            raise ReportError("--group-by: give at least one of " + "|".join(GROUP_KEYS))
        for key in self.group_by:
            if key not in GROUP_KEYS:
                raise ReportError(
                    f"--group-by: unknown key {key!r}; use one or more of "
                    f"{'|'.join(GROUP_KEYS)} (comma-separated)"
                )
        if len(set(self.group_by)) != len(self.group_by):
            raise ReportError("--group-by: a key is listed twice; list each once")
        if self.format not in FORMATS:
            raise ReportError(f"--format: unknown format {self.format!r}; use {'|'.join(FORMATS)}")
        if self.sci_unit not in SCI_UNITS:
            raise ReportError(
                f"--sci-unit: unknown unit {self.sci_unit!r}; use {'|'.join(SCI_UNITS)}"
            )
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ReportError("--to must be later than --from")


def parse_time(value: str, option: str) -> float:
    """Epoch seconds from an ISO 8601 date or date-time (naive means UTC), or ``now``."""
    text = value.strip()
    if text.lower() == "now":
        return wall()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{option}: {value!r} is not a date; write e.g. 2026-11-01 or 2026-11-01T12:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_group_by(value: str) -> tuple[str, ...]:
    """``"zone,day"`` -> ``("zone", "day")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _window(opts: ReportOptions) -> tuple[str, list[float]]:
    clauses, args = [], []
    if opts.start is not None:
        clauses.append("start >= ?")
        args.append(opts.start)
    if opts.end is not None:
        clauses.append("start < ?")
        args.append(opts.end)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def aggregate(conn: sqlite3.Connection, opts: ReportOptions) -> pd.DataFrame:
    """One row per group with the export columns (see module docstring)."""
    keys = [f'{_KEY_SQL[k]} AS "{_col(k)}"' for k in opts.group_by]
    where, args = _window(opts)
    order = ", ".join(f'"{_col(k)}"' for k in opts.group_by)
    if "pod" in opts.group_by:
        # a pod has exactly one usage row (idempotent key uid:usage): no GROUP BY needed
        sql = (
            f"SELECT {', '.join(keys)}, namespace || '/' || name AS pod, 1 AS pods, 1 AS jobs, "
            f"{', '.join(SUM_COLUMNS)}, estimated_kg, method FROM usage{where} ORDER BY {order}"
        )
    else:
        jobs = "1" if "job" in opts.group_by else "COUNT(DISTINCT job)"
        sums = [f"TOTAL({c}) AS {c}" for c in (*SUM_COLUMNS, "estimated_kg")]
        sql = (
            f"SELECT {', '.join(keys)}, COUNT(*) AS pods, {jobs} AS jobs, {', '.join(sums)}, "
            f"GROUP_CONCAT(DISTINCT method) AS method FROM usage{where} "
            f"GROUP BY {order} ORDER BY {order}"
        )
    cur = conn.execute(sql, args)
    columns = [d[0] for d in cur.description]
    df = pd.DataFrame.from_records(cur.fetchall(), columns=columns)
    for c in (*SUM_COLUMNS, "estimated_kg"):
        df[c] = df[c].astype(float)
    loc = df["co2e_location_kg"]
    df["estimated_share"] = (df["estimated_kg"] / loc.where(loc > 0)).fillna(0.0)
    methods = df["method"].fillna("")
    canonical = {m: ",".join(sorted(set(m.split(",")) - {""})) for m in methods.unique()}
    df["method"] = methods.map(canonical)
    lead = [_col(k) for k in opts.group_by]
    if "pod" in opts.group_by:
        lead.insert(lead.index("uid") + 1, "pod")
    ordered = [*lead, "pods", "jobs", *SUM_COLUMNS, "estimated_share", "method"]
    return df[ordered]


def _col(key: str) -> str:
    return "uid" if key == "pod" else key


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Column sums of a grouped frame (the figures every format must agree on)."""
    return {c: float(df[c].sum()) for c in SUM_COLUMNS if c in df}


def sci(conn: sqlite3.Connection, opts: ReportOptions) -> pd.DataFrame:
    """Per group (default: per job): E, I, M, R and SCI = (E x I + M) / R."""
    df = aggregate(conn, opts)
    e = df["energy_kwh"]
    carbon_g = df["co2e_location_kg"] * 1000.0
    r = {"job": df["jobs"], "pod": df["pods"], "gpu-hour": df["gpu_hours"]}[opts.sci_unit]
    out = df[[_col(k) for k in opts.group_by] + (["pod"] if "pod" in opts.group_by else [])].copy()
    out["E_kwh"] = e
    out["I_g_per_kwh"] = (carbon_g / e.where(e > 0)).fillna(0.0)
    out["M_g"] = df["embodied_kg"] * 1000.0
    out["R"] = r.astype(float)
    out["R_unit"] = opts.sci_unit
    out["SCI_g_per_unit"] = ((carbon_g + out["M_g"]) / out["R"].where(out["R"] > 0)).fillna(0.0)
    for c in (*SUM_COLUMNS, "estimated_share", "method"):
        out[c] = df[c]
    return out


def _meta(opts: ReportOptions, ledger: Path) -> dict[str, Any]:
    def iso(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()

    return {
        "ledger": str(ledger),
        "from": iso(opts.start),
        "to": iso(opts.end),
        "group_by": list(opts.group_by),
        "attribution": "runs are counted in the period and UTC day in which they started",
        "units": {
            "gpu_hours": "h",
            "energy_kwh": "kWh (facility, incl. PUE)",
            "*_kg": "kgCO2e",
            "estimated_share": "share of co2e_location_kg resting on estimated or missing "
            "intensity data",
        },
        "counterfactual": COUNTERFACTUAL_DEFINITION,
        "generated_at": datetime.fromtimestamp(wall(), UTC).isoformat(),
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts (column lists zipped: far faster than ``to_dict`` on big frames)."""
    names = [str(c) for c in df.columns]
    cols = [df[c].tolist() for c in df.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


def _encode_json(doc: dict[str, Any], rows: int) -> bytes:
    """Compact JSON (non-finite floats become null); indented when small enough to read."""
    body = msgspec.json.encode(doc)
    return msgspec.json.format(body, indent=1) if rows <= 5000 else body


def render(conn: sqlite3.Connection, opts: ReportOptions, ledger: Path) -> bytes:
    """The report in ``opts.format`` as bytes."""
    if opts.format == "png":
        return plot_png(conn, opts)
    if opts.format == "sci":
        frame = sci(conn, opts)
        meta = _meta(opts, ledger)
        doc = {
            "specification": "Software Carbon Intensity, Green Software Foundation "
            "(ISO/IEC 21031:2024): SCI = (E x I + M) / R",
            "functional_unit": opts.sci_unit,
            **meta,
            "units": {
                **meta["units"],
                "E_kwh": "kWh",
                "I_g_per_kwh": "gCO2e/kWh (location-based, energy-weighted mean)",
                "M_g": "gCO2e (embodied, GPU)",
                "R": f"functional units ({opts.sci_unit})",
                "SCI_g_per_unit": f"gCO2e per {opts.sci_unit}",
            },
            "rows": _records(frame),
            "totals": totals(frame),
        }
        return _encode_json(doc, len(frame))
    df = aggregate(conn, opts)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if opts.format == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed"))
        return buf.getvalue()
    if opts.format == "json":
        doc = {**_meta(opts, ledger), "rows": _records(df), "totals": totals(df)}
        return _encode_json(doc, len(df))
    schema_meta: dict[bytes | str, bytes | str] = dict(table.schema.metadata or {})
    schema_meta[b"lowcarb.report"] = json.dumps(_meta(opts, ledger)).encode()
    table = table.replace_schema_metadata(schema_meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def plot_png(conn: sqlite3.Connection, opts: ReportOptions) -> bytes:
    """Stacked bars of location-based emissions per UTC day by zone, avoided emissions as a line."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: thread-safe, Agg canvas, no global state

    daily = aggregate(conn, ReportOptions(start=opts.start, end=opts.end, group_by=("day", "zone")))
    fig = Figure(figsize=(10, 4.8), dpi=100)
    ax = fig.subplots()
    if daily.empty:
        ax.text(0.5, 0.5, "no accounted runs in this period", ha="center", va="center")
    else:
        wide = daily.pivot_table(
            index="day", columns="zone", values="co2e_location_kg", aggfunc="sum"
        ).fillna(0.0)
        days = pd.date_range(wide.index.min(), wide.index.max(), freq="D").strftime("%Y-%m-%d")
        wide = wide.reindex(days, fill_value=0.0)  # days without runs stay visible as gaps
        avoided = daily.groupby("day")["avoided_kg"].sum().reindex(days).fillna(0.0)
        x = np.arange(len(wide.index))
        bottom = np.zeros(len(x))
        cmap = matplotlib.colormaps["tab20"]
        for n, zone in enumerate(wide.columns):
            values = wide[zone].to_numpy(dtype=float)
            label, color = str(zone) or "(no zone)", cmap(n % 20)
            if len(x) <= 62:  # bars while they stay readable, steps (one polygon) beyond
                ax.bar(x, values, bottom=bottom, width=0.8, label=label, color=color)
            else:
                ax.fill_between(
                    x, bottom, bottom + values, step="mid", label=label, color=color, linewidth=0
                )
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


def build_report(ledger: str | Path, opts: ReportOptions) -> bytes:
    """Open ``ledger`` read-only (safe while the server writes) and render the report."""
    path = Path(ledger)
    conn = open_reader(path)
    try:
        return render(conn, opts, path)
    finally:
        conn.close()
