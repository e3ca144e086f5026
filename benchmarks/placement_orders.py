"""Placement under several node-order draws: one draw of the node names is one sample.

fgd and lowcarb break near-ties by a fixed per-node order, the crc32 of the node name (the FGD
order; lowcarb's fill order within a zone). The trace's names are one draw of that order; the FGD
paper's simulator draws a random name prefix per seed. Under load, waits and lowcarb's tCO2e move
with the draw, so a comparison at the trace's names compares one sample of each. Per start and
compression this benchmark runs carbon-greedy once (it breaks ties by a seeded hash of the pod and
node, never by name) and fgd and lowcarb under draws 0..K-1 (:func:`scheduler.sim.trace.
redraw_names`: draw 0 keeps the names, draw k prefixes them with ``ok-``); fgd reads no carbon,
so it runs once per draw and compression and serves every start. It reports lowcarb's tCO2e
and its cost in the one currency (:mod:`scheduler.sim.costing`) against carbon-greedy's and its
mean wait against fgd's, each as the mean over the draws and draw by draw (the same draw for
both). ``--load-scale``: the compressions, by default the whole
trace's 60 % and 90 % ones that ``placement.py --load-levels 60,90`` finds (seed 1 at 90 %:
19279.69). Table, then one JSON line:

    .venv/bin/python benchmarks/placement_orders.py --year 2023 --seed 0 --orders 6
    .venv/bin/python benchmarks/placement_orders.py --year 2021 --starts 07-01 --load-scale 38559.38
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: benchmarks/ is sys.path[0], not the repo
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.placement_args import (  # noqa: E402
    BAD_INPUT,
    SCALES,
    fail,
    options,
    parse_scales,
    report,
    shared_parser,
    skip_without_data,
)
from benchmarks.placement_starts import parse_starts, pct, short_start  # noqa: E402
from carbon.energy import PowerModel  # noqa: E402
from carbon.series import HourlySeries  # noqa: E402
from scheduler.scoring import Pricing  # noqa: E402
from scheduler.sim import inputs as sim_inputs  # noqa: E402
from scheduler.sim import replay  # noqa: E402
from scheduler.sim import run as sim_run  # noqa: E402
from scheduler.sim.carbon import Integrals  # noqa: E402
from scheduler.sim.costing import run_cost  # noqa: E402
from scheduler.sim.replay import Placements  # noqa: E402
from scheduler.sim.results import SimOptions  # noqa: E402
from scheduler.sim.trace import SimNodes, SimPods, redraw_names  # noqa: E402


@dataclass(frozen=True, slots=True)
class World:
    """What every run at one start shares: the zones' series, the power model, the integrals."""

    series: Mapping[str, HourlySeries]
    power: PowerModel
    integrals: Integrals
    pricing: Pricing  # what cost_usd is counted in (the lowcarb policy's)


def measure(pods: SimPods, nodes: SimNodes, placed: Placements, world: World) -> dict[str, float]:
    """One run's figures: tCO2e, mean wait over placed pods, pods that waited, GPU-hours and
    the cost in the one currency (:mod:`scheduler.sim.costing`)."""
    acc = replay.account(pods, nodes, placed, world.power, world.integrals)
    wait = (placed.start - placed.ready)[placed.placed]
    cost = run_cost(world.pricing, pods, placed, acc)
    return {
        "tco2e": round(acc.tco2e, 5),
        "cost_usd": round(cost["cost_usd"], 2),
        "wait_mean_s": round(float(wait.mean()) if wait.size else 0.0, 4),
        "waiting": int((wait > 0).sum()),
        "unplaced": int((~placed.placed).sum()),
        "gpu_hours": round(
            float((pods.gpu_fraction * placed.runtime)[placed.placed].sum()) / 3600, 1
        ),
    }


def cell_verdict(cg: dict[str, float], draws: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """lowcarb against carbon-greedy's tCO2e (and cost in the one currency) and fgd's mean wait:
    over the draws' means, and the draws (paired: fgd at the same draw) that meet each."""
    lc_t = statistics.fmean(d["lowcarb"]["tco2e"] for d in draws)
    lc_c = statistics.fmean(d["lowcarb"]["cost_usd"] for d in draws)
    lc_w = statistics.fmean(d["lowcarb"]["wait_mean_s"] for d in draws)
    fgd_w = statistics.fmean(d["fgd"]["wait_mean_s"] for d in draws)
    per = [100.0 * (d["lowcarb"]["tco2e"] / cg["tco2e"] - 1.0) for d in draws]
    return {
        "vs_carbon_greedy_pct": round(100.0 * (lc_t / cg["tco2e"] - 1.0), 2),
        "vs_carbon_greedy_pct_min": round(min(per), 2),
        "vs_carbon_greedy_pct_max": round(max(per), 2),
        "draws_above_carbon_greedy": sum(x > 0 for x in per),
        "cost_vs_carbon_greedy_pct": round(100.0 * (lc_c / cg["cost_usd"] - 1.0), 2),
        "draws_cost_above_carbon_greedy": sum(
            d["lowcarb"]["cost_usd"] > cg["cost_usd"] for d in draws
        ),
        "wait_mean_s": round(lc_w, 4),
        "fgd_wait_mean_s": round(fgd_w, 4),
        "wait_le_fgd": round(lc_w, 6) <= round(fgd_w, 6),  # float noise is not a miss
        "draws_wait_le_fgd": sum(
            d["lowcarb"]["wait_mean_s"] <= d["fgd"]["wait_mean_s"] for d in draws
        ),
        "unplaced": sum(d["lowcarb"]["unplaced"] for d in draws),
    }


def shifted(t0: float, placed: Placements, to: float) -> Placements:
    """fgd's run at the trace's time 0 ``t0`` moved to time 0 ``to``: fgd reads no carbon, so
    its placements are the same at every start; only the grid they run under moves."""
    dt = to - t0
    return replace(placed, ready=placed.ready + dt, start=placed.start + dt)


def run_cells(
    opts: SimOptions,
    starts: Sequence[str],
    scales: Sequence[float],
    orders: int,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every start x compression: carbon-greedy once, fgd and lowcarb at each draw."""
    power = sim_run.power_model(opts.power)
    policies = sim_run.build_policies(power, sim_run.lowcarb_policy(opts.policy))
    fgd_runs: dict[tuple[int, float], tuple[float, Placements]] = {}  # (its time 0, run)
    rows: list[dict[str, Any]] = []
    for start in starts:
        o = replace(opts, start=start)
        real, nodes, t0 = sim_inputs.load_inputs(o, scaled=False)
        series = sim_inputs.run_series(o, real, nodes, power)
        world = World(series, power, Integrals.of(series), sim_run.priced_with(policies))

        def run(pods: SimPods, nodes: SimNodes, name: str, world: World = world) -> Placements:
            return replay.simulate(pods, nodes, policies[name], world.series, seed=opts.seed)

        for scale in scales:
            pods = real.scaled(scale)
            if progress is not None:
                progress(f"start {short_start(start)}, x{scale:g}: carbon-greedy")
            cg = measure(pods, nodes, run(pods, nodes, "carbon-greedy"), world)
            draws: list[dict[str, Any]] = []
            for k in range(orders):
                if progress is not None:
                    progress(f"start {short_start(start)}, x{scale:g}: draw {k}")
                drawn = redraw_names(nodes, k)
                if (k, scale) not in fgd_runs:
                    fgd_runs[k, scale] = (t0, run(pods, drawn, "fgd"))
                fgd = measure(pods, drawn, shifted(*fgd_runs[k, scale], t0), world)
                lc = measure(pods, drawn, run(pods, drawn, "lowcarb"), world)
                draws.append({"draw": k, "lowcarb": lc, "fgd": fgd})
            rows.append(
                {
                    "start": start,
                    "load_scale": scale,
                    "carbon_greedy": cg,
                    "draws": draws,
                    **cell_verdict(cg, draws),
                }
            )
    return rows


def tally(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per compression, over the starts: cells whose draw-mean tCO2e (and cost) <= carbon-greedy's
    and whose draw-mean wait <= fgd's, the mean and worst draw-mean difference, and the draws (of
    all cells) above carbon-greedy and with a wait <= fgd's at the same draw."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        t = out.setdefault(
            f"{row['load_scale']:g}",
            {"cells": 0, "tco2e_le_carbon_greedy": 0, "wait_le_fgd": 0, "diffs": [],
             "cost_le_carbon_greedy": 0, "cost_diffs": [], "draws": 0,
             "draws_above_carbon_greedy": 0, "draws_cost_above_carbon_greedy": 0,
             "draws_wait_le_fgd": 0, "unplaced": 0},
        )  # fmt: skip
        t["cells"] += 1
        t["tco2e_le_carbon_greedy"] += row["vs_carbon_greedy_pct"] <= 0.0
        t["wait_le_fgd"] += bool(row["wait_le_fgd"])
        t["diffs"].append(row["vs_carbon_greedy_pct"])
        t["cost_le_carbon_greedy"] += row["cost_vs_carbon_greedy_pct"] <= 0.0
        t["cost_diffs"].append(row["cost_vs_carbon_greedy_pct"])
        t["draws"] += len(row["draws"])
        for key in ("draws_above_carbon_greedy", "draws_cost_above_carbon_greedy",
                    "draws_wait_le_fgd", "unplaced"):  # fmt: skip
            t[key] += row[key]
    for t in out.values():
        diffs, costs = t.pop("diffs"), t.pop("cost_diffs")
        t["mean_vs_carbon_greedy_pct"] = round(statistics.fmean(diffs), 2)
        t["worst_vs_carbon_greedy_pct"] = max(diffs)
        t["mean_cost_vs_carbon_greedy_pct"] = round(statistics.fmean(costs), 2)
        t["worst_cost_vs_carbon_greedy_pct"] = max(costs)
    return out


def tables(rows: Sequence[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> list[Table]:
    per = Table(title="lowcarb over node-order draws: tCO2e vs carbon-greedy, wait vs fgd")
    for col in ("start", "load x", "vs cg", "draws", "> cg", "$ vs cg", "wait s", "fgd s",
                "<= fgd"):  # fmt: skip
        per.add_column(col, justify="left" if col == "start" else "right")
    for r in rows:
        n = len(r["draws"])
        lo, hi = r["vs_carbon_greedy_pct_min"], r["vs_carbon_greedy_pct_max"]
        per.add_row(
            short_start(r["start"]),
            f"{r['load_scale']:g}",
            pct(r["vs_carbon_greedy_pct"]),
            f"{lo:+.1f}..{hi:+.1f}",
            f"{r['draws_above_carbon_greedy']}/{n}",
            pct(r["cost_vs_carbon_greedy_pct"]),
            f"{r['wait_mean_s']:.3f}",
            f"{r['fgd_wait_mean_s']:.3f}",
            f"{r['draws_wait_le_fgd']}/{n}",
        )
    tot = Table(title="per compression over the starts: cells (draw means), draws (d)")
    for col in ("load x", "cells", "t<=cg", "mean", "worst", "$<=cg", "$ mean", "w<=fgd",
                "d>cg", "d w<=fgd", "lost"):  # fmt: skip
        tot.add_column(col, justify="right")
    for load, t in summary.items():
        tot.add_row(
            load,
            str(t["cells"]),
            str(t["tco2e_le_carbon_greedy"]),
            pct(t["mean_vs_carbon_greedy_pct"]),
            pct(t["worst_vs_carbon_greedy_pct"]),
            str(t["cost_le_carbon_greedy"]),
            pct(t["mean_cost_vs_carbon_greedy_pct"]),
            str(t["wait_le_fgd"]),
            f"{t['draws_above_carbon_greedy']}/{t['draws']}",
            f"{t['draws_wait_le_fgd']}/{t['draws']}",
            str(t["unplaced"]),
        )
    return [per, tot]


def main(argv: Sequence[str] | None = None) -> None:
    parser = shared_parser(__doc__)
    parser.add_argument("--load-scale", default=SCALES, help="comma-separated compressions")
    parser.add_argument("--orders", type=int, default=6, help="node-order draws (0..K-1)")
    args = parser.parse_args(argv)
    skip_without_data("placement_orders")
    console = Console(stderr=True)
    try:
        if args.orders < 1:
            raise ValueError(f"--orders: {args.orders}; give 1 or more draws (1: the names only)")
        starts = parse_starts(args.starts, args.year)
        scales = parse_scales(args.load_scale)
        opts = options(args)
        rows = run_cells(opts, starts, scales, args.orders, progress=lambda m: console.log(m))
    except BAD_INPUT as err:
        fail(err)
    summary = tally(rows)
    tabs = tables(rows, summary)
    report("placement_orders", args, opts, tabs, orders=args.orders, cells=rows, summary=summary)


if __name__ == "__main__":
    main()
