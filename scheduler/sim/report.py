"""Output of a placement comparison: the tables, the JSON line and the PNG charts.

The tables (the run, then one per load level) are rendered with rich, the columns of
:data:`NARROW` by default (they fit 80 characters) and every column with ``wide``; :func:`rows`
gives the same cells unrounded for ``--output csv``; the JSON line is
:meth:`Comparison.summary`; the charts (matplotlib, Agg backend) are cumulative emissions over
time per policy (with the bound), emissions by zone per policy, GPUs in use by zone over time per
policy, and, with load levels, emissions against GPU-hours and waiting per level.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from scheduler.sim.bound import Bound
from scheduler.sim.run import REFERENCE, Comparison, Level, PolicyRun

COLUMNS = (
    ("tCO2e", "tco2e", "{:.3f}"),
    ("saved %", "saved_pct", "{:.1f}"),
    ("bound share", "bound_share", "{:.3f}"),
    ("free GPU %", "unallocated_gpu_pct_mean", "{:.2f}"),
    ("free @peak", "unallocated_gpu_pct_peak", "{:.2f}"),
    ("peak alloc %", "peak_allocated_gpu_pct", "{:.1f}"),
    ("waiting", "pods_waiting", "{:.0f}"),
    ("wait mean s", "wait_mean_s", "{:.1f}"),
    ("wait p95 s", "wait_p95_s", "{:.1f}"),
    ("unplaced", "unplaced", "{:.0f}"),
    ("GPU-h", "gpu_hours", "{:,.0f}"),
    ("kWh", "energy_kwh", "{:,.0f}"),
    ("cost $", "cost_usd", "{:,.0f}"),
    ("slowdown", "slowdown_mean", "{:.2f}"),
    ("JCT p95 h", "jct_p95_s", "{:.2f}"),
    ("decisions/s", "decisions_per_s", "{:.0f}"),
)
SHIFT_COLUMNS = (
    ("held", "pods_held", "{:.0f}"),
    ("hold mean h", "hold_mean_h", "{:.2f}"),
    ("shift saved %", "shift_saved_pct", "{:.1f}"),
    ("batch shift %", "shift_saved_batch_pct", "{:.1f}"),
)
SCALED = {"jct_p95_s": 1 / 3600.0}
# the default table's columns: emissions, saving, fragmentation, waiting, unplaced (+ shift saving)
NARROW = frozenset(
    {"tco2e", "saved_pct", "unallocated_gpu_pct_mean", "wait_p95_s", "unplaced", "shift_saved_pct"}
)
SHORT = {"unallocated_gpu_pct_mean": "free %", "wait_p95_s": "wait s", "shift_saved_pct": "shift %"}


def _cell(m: Mapping[str, float], key: str, fmt: str) -> str:
    return fmt.format(m[key] * SCALED.get(key, 1.0)) if key in m else "-"


def _columns(runs: Mapping[str, PolicyRun], wide: bool) -> tuple[tuple[str, str, str], ...]:
    shift = any("pods_held" in run.metrics for run in runs.values())
    columns = COLUMNS + (SHIFT_COLUMNS if shift else ())
    if wide:
        return columns
    return tuple((SHORT.get(key, head), key, fmt) for head, key, fmt in columns if key in NARROW)


def _bound_cells(runs: Mapping[str, PolicyRun], bound: Bound) -> dict[str, float]:
    k8s = runs[REFERENCE].metrics["tco2e"]
    saved = 100 * (1 - bound.tco2e / k8s) if k8s > 0 else 0.0
    return {"tco2e": bound.tco2e, "saved_pct": saved, "bound_share": 1.0}


def _table(title: str, runs: Mapping[str, PolicyRun], bound: Bound, wide: bool = True) -> Table:
    columns = _columns(runs, wide)
    t = Table(title=title)
    t.add_column("policy", no_wrap=True)
    for head, _, _ in columns:
        t.add_column(head, justify="right")
    for name, run in runs.items():
        t.add_row(name, *(_cell(run.metrics, key, fmt) for _, key, fmt in columns))
    b = _bound_cells(runs, bound)
    t.add_row("bound (LP)", *(_cell(b, key, fmt) for _, key, fmt in columns))
    return t


def rows(c: Comparison) -> list[dict[str, object]]:
    """Every column of every table as flat rows (``level`` is '' for the run itself)."""
    out: list[dict[str, object]] = []
    tables = [("", c.runs, c.bound)] + [
        (str(lv.load), lv.runs, lv.bound) for lv in c.levels if lv.runs is not c.runs
    ]
    for level, runs, bound in tables:
        columns = _columns(runs, True)
        for name, metrics in [
            *((n, r.metrics) for n, r in runs.items()),
            ("bound (LP)", _bound_cells(runs, bound)),
        ]:
            row: dict[str, object] = {"level": level, "policy": name}
            row.update({key: metrics.get(key) for _, key, _ in columns})
            out.append(row)
    return out


def table(c: Comparison, wide: bool = True) -> Table:
    o = c.options
    title = (
        f"placement: {len(c.pods)} pods of '{o.trace}', {len(c.nodes)} nodes, zones "
        f"{', '.join(c.zones)}, {'LWA 2020' if o.lwa else o.year}, load x{o.load_scale:g}"
        + (f", slack {o.slack_h:g} h" if o.slack_h else "")
    )
    return _table(title, c.runs, c.bound, wide)


def level_table(c: Comparison, level: Level, wide: bool = True) -> Table:
    what = "real arrival times" if level.load == "real" else f"target peak {level.load} % allocated"
    title = (
        f"load level {level.load}: {what}, arrivals x{level.load_scale:,.0f}, "
        f"{REFERENCE} peak allocated {level.peak_allocated_gpu_pct:.1f} % of GPUs"
    )
    return _table(title, level.runs, level.bound, wide)


def print_results(c: Comparison, console: Console | None = None, *, wide: bool = True) -> None:
    """The table (one per load level too), a note on the bound, then the JSON line last.

    ``wide``: every column; else the :data:`NARROW` ones, which fit 80 characters."""
    console = console or Console()
    console.print(table(c, wide))
    console.print(f"bound: {c.bound.status}", style="dim")
    for level in c.levels:
        if level.runs is c.runs:
            console.print(f"load level {level.load}: the table above", style="dim")
            continue
        console.print(level_table(c, level, wide))
        steps = ", ".join(f"x{s:,.0f} -> {v:.1f} %" for s, v in level.search)
        console.print(f"bound: {level.bound.status}; search: {steps}", style="dim")
    print(json.dumps(c.summary()), flush=True)


def _days(c: Comparison) -> np.ndarray:
    return (c.edges[1:] - c.edges[0]) / 86400.0


def write_plots(c: Comparison, out: Path) -> list[Path]:
    """Write the three PNGs into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    days = _days(c)

    fig, ax = plt.subplots(figsize=(9, 5))
    for name, run in c.runs.items():
        ax.plot(days, np.cumsum(run.accounting.zone_hour_kg.sum(axis=0)) / 1000.0, label=name)
    ax.plot(days, np.cumsum(c.bound.hour_kg) / 1000.0, "k--", label="bound (LP)")
    ax.set_xlabel("days since first arrival")
    ax.set_ylabel("cumulative tCO2e (location-based)")
    ax.set_title("Cumulative emissions per policy")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "placement_cumulative_emissions.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    names = [*c.runs, "bound"]
    width = 0.8 / len(names)
    x = np.arange(len(c.zones))
    for k, name in enumerate(names):
        kg = c.bound.zone_kg if name == "bound" else c.runs[name].accounting.zone_hour_kg.sum(1)
        ax.bar(x + k * width, np.asarray(kg) / 1000.0, width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, list(c.zones))
    ax.set_ylabel("tCO2e")
    ax.set_title("Emissions by zone")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "placement_emissions_by_zone.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    n = len(c.runs)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), sharex=True, squeeze=False)
    for ax, (name, run) in zip(axes[:, 0], c.runs.items(), strict=True):
        ax.stackplot(days, run.accounting.zone_hour_gpus, labels=list(c.zones))
        ax.set_ylabel("GPUs")
        ax.set_title(name, fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=len(c.zones))
    axes[-1, 0].set_xlabel("days since first arrival")
    fig.suptitle("GPUs in use by zone (hourly mean)")
    fig.tight_layout()
    paths.append(out / "placement_gpu_use_by_zone.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if c.levels:
        n = len(c.levels)
        fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.6), squeeze=False)
        for ax, level in zip(axes[0], c.levels, strict=True):
            for name, run in level.runs.items():
                m = run.metrics
                ax.scatter(m["gpu_hours"], m["tco2e"], s=40)
                ax.annotate(
                    f"{name}\nwait {m['wait_mean_s']:.0f} s",
                    (m["gpu_hours"], m["tco2e"]),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
            ax.axhline(level.bound.tco2e, color="k", ls="--", lw=0.8, label="bound (LP)")
            ax.set_xlabel("GPU-hours")
            ax.set_ylabel("tCO2e (location-based)")
            ax.set_title(
                f"load {level.load} (x{level.load_scale:,.0f}, "
                f"peak {level.peak_allocated_gpu_pct:.0f} % allocated)",
                fontsize=9,
            )
            ax.legend(fontsize=7)
        fig.suptitle("Emissions against GPU time per load level (mean wait per policy)")
        fig.tight_layout()
        paths.append(out / "placement_load_levels.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
