"""Placement at several start dates: the loaded levels sampled across a year, not at one moment.

``placement.py --load-levels`` aligns the trace's time 0 with 1 January 00:00 UTC. Compressed
arrivals (whole trace: x2,560 for 60 %, x38,559 for 90 %) then all arrive within about 1.4 h and
6 min of that moment, so every pod of a loaded run is placed under one hour's grid (New Year's
night) and a loaded comparison samples one moment of the year. This benchmark repeats the
comparison at several starts (default: the first day of each quarter, 00:00 UTC). Each level's
time-scale factor is searched at the first start and reused at the others (k8s-default, whose
peak allocation sets it, reads no carbon). Per start and level: lowcarb's tCO2e against
carbon-greedy's, its bound share, mean wait against fgd's and GPU-hours against k8s-default's;
then per level how many starts meet each of the issue's targets. Table, then one JSON line:

    .venv/bin/python benchmarks/placement_starts.py --year 2023 --seed 0
    .venv/bin/python benchmarks/placement_starts.py --load-levels 90 --starts 01-01,07-01T12:00
    .venv/bin/python benchmarks/placement_starts.py --quick --year 2021 --seed 1
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: benchmarks/ is sys.path[0], not the repo
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.placement_args import (  # noqa: E402
    BAD_INPUT,
    fail,
    options,
    report,
    shared_parser,
    skip_without_data,
)
from scheduler.sim import run as sim_run  # noqa: E402
from scheduler.sim.levels import parse_load_levels  # noqa: E402
from scheduler.sim.results import Comparison, Level, SimOptions  # noqa: E402

POLICIES = ("fgd", "carbon-greedy", "lowcarb")  # k8s-default always runs (the reference)
_START = re.compile(r"^(\d\d)-(\d\d)(?:T(\d\d):(\d\d))?$")


def parse_starts(text: str, year: int) -> list[str]:
    """``MM-DD[Thh:mm]`` items (comma-separated) as ISO UTC date-times in ``year``."""
    out: list[str] = []
    for item in (s.strip() for s in text.split(",")):
        m = _START.match(item)
        try:
            if m is None:
                raise ValueError
            month, day, hour, minute = (int(g) if g else 0 for g in m.groups())
            when = datetime(year, month, day, hour, minute, tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"--starts: {item!r} is not a date in {year}; write MM-DD or MM-DDThh:mm items, "
                "e.g. 01-01,04-01,07-01T12:00"
            ) from None
        out.append(when.strftime("%Y-%m-%dT%H:%MZ"))
    if len(set(out)) != len(out):
        raise ValueError(f"--starts: {text!r} names a start twice; give each once")
    return out


def short_start(start: str) -> str:
    """``2021-07-01T12:00Z`` -> ``07-01 12:00``; midnight starts as the date alone."""
    day, time = start[5:10], start[11:16]
    return day if time == "00:00" else f"{day} {time}"


def level_row(comp: Comparison, load: str, scale: float) -> dict[str, Any]:
    """One level's summary (``placement.py``'s keys, :meth:`Level.summary`) from a run at one
    time-scale factor."""
    peak = comp.runs[sim_run.REFERENCE].metrics["peak_allocated_gpu_pct"]
    return Level(load, scale, peak, comp.pods, comp.edges, comp.runs, comp.bound).summary()


def verdict(level: dict[str, Any]) -> dict[str, Any]:
    """lowcarb against the targets at one start and level (``None`` where a policy is missing)."""
    pol = level["policies"]
    lc, cg, fgd, k8s = (pol.get(n) for n in ("lowcarb", "carbon-greedy", "fgd", "k8s-default"))
    out: dict[str, Any] = {
        "vs_carbon_greedy_pct": None,
        "cost_vs_carbon_greedy_pct": None,
        "wait_le_fgd": None,
        "gpu_h_ratio": None,
    }
    if lc is None:
        return out
    if cg is not None and cg["tco2e"] > 0:
        out["vs_carbon_greedy_pct"] = round(100.0 * (lc["tco2e"] / cg["tco2e"] - 1.0), 2)
    if cg is not None and cg.get("cost_usd") and "cost_usd" in lc:  # the one currency
        out["cost_vs_carbon_greedy_pct"] = round(100.0 * (lc["cost_usd"] / cg["cost_usd"] - 1), 2)
    if fgd is not None:
        out["wait_le_fgd"] = lc["wait_mean_s"] <= fgd["wait_mean_s"]
    if k8s is not None and k8s.get("gpu_hours"):
        out["gpu_h_ratio"] = round(lc["gpu_hours"] / k8s["gpu_hours"], 3)
    out["unplaced_placed_by_others"] = int(lc.get("unplaced_placed_by_others", 0))
    return out


def tally(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per level: starts, starts where lowcarb's tCO2e (and, apart, its cost in the one currency)
    <= carbon-greedy's, the mean and worst difference, starts where its mean wait <= fgd's, the
    largest GPU-hour ratio to k8s-default's and the pods lowcarb left unplaced that another
    policy placed (summed over the starts)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        for level in row["levels"]:
            v = verdict(level)
            t = out.setdefault(
                level["load"],
                {
                    "starts": 0,
                    "tco2e_le_carbon_greedy": 0,
                    "diffs": [],
                    "cost_le_carbon_greedy": 0,
                    "cost_diffs": [],
                    "wait_le_fgd": 0,
                    "unplaced_placed_by_others": 0,
                },
            )
            t["starts"] += 1
            t["unplaced_placed_by_others"] += v.get("unplaced_placed_by_others", 0)
            if v["vs_carbon_greedy_pct"] is not None:
                t["diffs"].append(v["vs_carbon_greedy_pct"])
                t["tco2e_le_carbon_greedy"] += v["vs_carbon_greedy_pct"] <= 0.0
            if v["cost_vs_carbon_greedy_pct"] is not None:
                t["cost_diffs"].append(v["cost_vs_carbon_greedy_pct"])
                t["cost_le_carbon_greedy"] += v["cost_vs_carbon_greedy_pct"] <= 0.0
            t["wait_le_fgd"] += bool(v["wait_le_fgd"])
            if v["gpu_h_ratio"] is not None:
                t["gpu_h_ratio_max"] = max(t.get("gpu_h_ratio_max", 0.0), v["gpu_h_ratio"])
    for t in out.values():
        diffs = t.pop("diffs")
        t["mean_vs_carbon_greedy_pct"] = round(sum(diffs) / len(diffs), 2) if diffs else None
        t["worst_vs_carbon_greedy_pct"] = max(diffs) if diffs else None
        costs = t.pop("cost_diffs")
        t["mean_cost_vs_carbon_greedy_pct"] = round(sum(costs) / len(costs), 2) if costs else None
    return out


def run_starts(
    opts: SimOptions,
    starts: Sequence[str],
    levels: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every level at every start: the first start searches the scales, the others reuse them."""
    rows: list[dict[str, Any]] = []
    scales: dict[str, float] = {}
    for k, start in enumerate(starts):
        if progress is not None:
            progress(f"start {start} ({k + 1}/{len(starts)})")
        if k == 0:
            comp = sim_run.compare(replace(opts, start=start, load_levels=tuple(levels)))
            found = [lv.summary() for lv in comp.levels]
            scales = {lv.load: lv.load_scale for lv in comp.levels}
        else:
            found = [
                level_row(
                    sim_run.compare(replace(opts, start=start, load_scale=scales[load])),
                    load,
                    scales[load],
                )
                for load in levels
            ]
        rows.append({"start": start, "levels": found})
    return rows


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def table(rows: Sequence[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> list[Table]:
    per = Table(title="lowcarb at each start: tCO2e vs carbon-greedy (cg), mean wait vs fgd")
    for col in ("start UTC", "load", "lowcarb t", "cg t", "vs cg", "$ vs cg", "bound", "wait s",
                "fgd s", "GPU-h/k8s"):  # fmt: skip
        per.add_column(col, justify="left" if col in ("start UTC", "load") else "right")
    for row in rows:
        for level in row["levels"]:
            pol, v = level["policies"], verdict(level)
            lc, cg, fgd = pol.get("lowcarb", {}), pol.get("carbon-greedy", {}), pol.get("fgd", {})
            per.add_row(
                short_start(row["start"]),
                str(level["load"]),
                f"{lc.get('tco2e', float('nan')):.4f}",
                f"{cg.get('tco2e', float('nan')):.4f}",
                pct(v["vs_carbon_greedy_pct"]),
                pct(v["cost_vs_carbon_greedy_pct"]),
                f"{lc.get('bound_share', float('nan')):.3f}",
                f"{lc.get('wait_mean_s', float('nan')):.2f}",
                f"{fgd.get('wait_mean_s', float('nan')):.2f}",
                "-" if v["gpu_h_ratio"] is None else f"x{v['gpu_h_ratio']:.2f}",
            )
    tot = Table(title="per level, over the starts")
    for col in ("load", "starts", "t <= cg", "mean vs cg", "worst vs cg", "$ <= cg", "$ mean",
                "wait <= fgd", "max GPU-h/k8s", "lost pods"):  # fmt: skip
        tot.add_column(col, justify="left" if col == "load" else "right")
    for load, t in summary.items():
        tot.add_row(
            load,
            str(t["starts"]),
            str(t["tco2e_le_carbon_greedy"]),
            pct(t["mean_vs_carbon_greedy_pct"]),
            pct(t["worst_vs_carbon_greedy_pct"]),
            str(t["cost_le_carbon_greedy"]),
            pct(t["mean_cost_vs_carbon_greedy_pct"]),
            str(t["wait_le_fgd"]),
            f"x{t['gpu_h_ratio_max']:.2f}" if "gpu_h_ratio_max" in t else "-",
            str(t["unplaced_placed_by_others"]),
        )
    return [per, tot]


def main(argv: Sequence[str] | None = None) -> None:
    parser = shared_parser(__doc__)
    parser.add_argument("--load-levels", default="real,60,90", help="as in placement.py")
    parser.add_argument("--quick", action="store_true", help="the quick run's 2,000 pods")
    args = parser.parse_args(argv)
    skip_without_data("placement_starts")
    console = Console(stderr=True)
    try:
        starts = parse_starts(args.starts, args.year)
        levels = parse_load_levels(args.load_levels)
        opts = options(args, quick=args.quick, policies=POLICIES)
        rows = run_starts(opts, starts, levels, progress=lambda m: console.log(m))
    except BAD_INPUT as err:
        fail(err)
    summary = tally(rows)
    report("placement_starts", args, opts, table(rows, summary), starts=rows, summary=summary)


if __name__ == "__main__":
    main()
