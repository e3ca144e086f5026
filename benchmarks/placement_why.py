"""Why lowcarb's placements emit more than the least-emitting choice: a per-decision attribution.

Replays the quick placement run (``--full``: the whole trace on the whole fleet, as
``benchmarks/placement.py`` without ``--quick``; :mod:`scheduler.sim.run`, the shipped default
policy) with the engine wrapped: for every pod lowcarb places, it compares the chosen node with the
candidate of least expected gCO2e in the same cycle (the carbon term's own estimate over the class's
expected run) and names the cost part that outweighed the carbon: ``gpu-time price`` (cheaper GPU
time on the chosen node), ``fgd price`` (the FGD delta: it strands fewer GPUs), ``fill-order price``
(it is earlier in the fleet's fill order, :mod:`scheduler.costs.fill_order`), ``in band`` (both were
within the indifference band and the FGD order chose), or ``carbon-optimal``; the part that saved
the most USD against the carbon it cost (the fill order's part: the stranded price's difference less
what it would be with the FGD delta alone). Excess kg are the estimate's difference over the class's
expected run scaled to the pod's real duration (an estimate, not accounting). Then the accounting
itself: both policies' accounted kg (each pod's real run on its node) by the pod's run time, and the
pods whose placements differ most; ``--known-durations`` tells both engines each pod's real run time
(an oracle: what a lowcarb.dev/expected-duration annotation would give) to see what the class's
expected run costs. Also prints both policies' tCO2e, mean wait and GPU-hours. Table, then one JSON
line:

    .venv/bin/python benchmarks/placement_why.py --year 2022 --load-scale 1,1211
    .venv/bin/python benchmarks/placement_why.py --year 2022 --seed 2 --load-scale 1164
    .venv/bin/python benchmarks/placement_why.py --year 2022 --load-scale 1211 --known-durations
    .venv/bin/python benchmarks/placement_why.py --year 2022 --load-scale 1211 --policy my.yaml
    .venv/bin/python benchmarks/placement_why.py --full --year 2021 --seed 2 --load-scale 38559.38
    .venv/bin/python benchmarks/placement_why.py --full --year 2021 --start 2021-07-01 \\
        --load-scale 38559.38
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: benchmarks/ is sys.path[0], not the repo
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.placement_args import BAD_INPUT, fail, parse_scales  # noqa: E402
from carbon.datadir import data_dir  # noqa: E402
from scheduler.sim import inputs as sim_inputs  # noqa: E402
from scheduler.sim import replay  # noqa: E402
from scheduler.sim import run as sim_run  # noqa: E402
from scheduler.sim.carbon import Integrals  # noqa: E402
from scheduler.sim.results import SimOptions  # noqa: E402


def cause_of(record: tuple[Any, ...]) -> str:
    """The component that made the chosen node emit more than the least-gCO2e candidate: of the
    GPU-time, FGD-delta and fill-order USD differences (chosen - least-gCO2e), the most negative."""
    excess, level_best, d_gpu, d_fgd, d_fill, same_model, same_zone = record
    parts = {"gpu-time price": d_gpu, "fgd price": d_fgd, "fill-order price": d_fill}
    name, saved = min(parts.items(), key=lambda kv: kv[1])
    if excess <= 1e-9:
        cause = "carbon-optimal"
    elif level_best == 10:
        cause = "in band (FGD order)"
    elif saved < 0:
        cause = name
    else:
        cause = "other"
    model = "same model" if same_model else "other model"
    zone = "same zone" if same_zone else "other zone"
    return f"{cause}, {model}, {zone}"


TOP_PODS = 8
RUN_TIME_EDGES = ((3600.0, "< 1 h"), (86400.0, "1 h - 1 d"), (7 * 86400.0, "1 d - 1 w"))


def duration_split(
    duration: np.ndarray, kg_greedy: np.ndarray, kg_lowcarb: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Both policies' accounted kg summed over pods grouped by real run time (and the count)."""
    out: dict[str, dict[str, Any]] = {}
    low = 0.0
    for high, label in (*RUN_TIME_EDGES, (np.inf, ">= 1 w")):
        sel = (duration >= low) & (duration < high)
        out[label] = {
            "pods": int(sel.sum()),
            "carbon-greedy": round(float(kg_greedy[sel].sum()), 1),
            "lowcarb": round(float(kg_lowcarb[sel].sum()), 1),
        }
        low = high
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2022)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load-scale", default="1", help="comma-separated arrival compressions")
    parser.add_argument(
        "--known-durations",
        action="store_true",
        help="a diagnostic: both policies' engines are told each pod's real run time (as a "
        "lowcarb.dev/expected-duration annotation would) instead of the class's expected one",
    )
    parser.add_argument(
        "--start", default=None, help="date the trace's time 0 is aligned to (default Jan 1)"
    )
    parser.add_argument("--policy", default=None, help="a lowcarb policy file (default: shipped)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the whole trace on the whole fleet (8,152 pods, 1,213 nodes) instead of the quick "
        "run's first 2,000 pods on 290 nodes",
    )
    args = parser.parse_args()
    if data_dir() is None:
        print("placement_why: no data directory (set LOWCARB_DATA); skipped", file=sys.stderr)
        raise SystemExit(0)
    opts = SimOptions(quick=not args.full, year=args.year, seed=args.seed, start=args.start)
    try:
        scales = parse_scales(args.load_scale)
        real, nodes, _ = sim_inputs.load_inputs(opts, scaled=False)
        power = sim_run.power_model(None)
        series = sim_inputs.run_series(opts, real, nodes, power)
        lowcarb = sim_run.lowcarb_policy(None if args.policy is None else Path(args.policy))
    except BAD_INPUT as err:  # one line naming the option, exit 2
        fail(err)
    policies = sim_run.build_policies(power, lowcarb)
    integrals = Integrals.of(series)
    make_engine = replay.make_engine
    out: list[dict[str, Any]] = []
    for scale in scales:
        pods = real.scaled(scale)
        last: dict[int, tuple[Any, ...]] = {}

        def wrapped(
            policy: Any, fleet: Any, last: dict[int, tuple[Any, ...]] = last, pods: Any = pods
        ) -> Any:
            engine = make_engine(policy, fleet)
            evaluate = engine.evaluate
            mine = policy is policies["lowcarb"]

            def spy(d: Any, table: Any, carbon: Any, now: float, **kw: Any) -> Any:
                if args.known_durations:
                    kw["duration_s"] = float(pods.duration[int(d.uid.removeprefix("sim-"))])
                ev = evaluate(d, table, carbon, now, **kw)
                if not mine:
                    return ev
                if ev.cost is None or "carbon" not in ev.terms or not ev.feasible.any():
                    return ev
                g = ev.terms["carbon"].raw
                chosen = int(np.nanargmax(np.where(ev.feasible, ev.combined, -np.inf)))
                best = int(np.argmin(np.where(ev.feasible, np.nan_to_num(g, nan=np.inf), np.inf)))
                c = ev.cost
                d_stranded = float(c.stranded_usd[chosen] - c.stranded_usd[best])
                d_fgd = d_stranded  # the FGD delta's part: priced as if fillOrderGpus were 0
                fit = ev.terms.get("gpu_fit")
                if fit is not None and fit.unit == "fragmented GPUs added":
                    delta = np.nan_to_num(fit.raw, nan=0.0)
                    low = float(delta[ev.feasible].min())
                    run_h = ev.terms["carbon"].detail["run_h"]
                    fgd_usd = (delta - low) * run_h * c.stranded_hour_price
                    d_fgd = float(fgd_usd[chosen] - fgd_usd[best])
                last[int(d.uid.removeprefix("sim-"))] = (
                    float(g[chosen] - g[best]),
                    int(ev.levels[best]),
                    float(c.gpu_usd[chosen] - c.gpu_usd[best]),
                    d_fgd,
                    d_stranded - d_fgd,  # what the fill order added
                    bool(table.gpu_model[chosen] == table.gpu_model[best]),
                    bool(table.zone[chosen] == table.zone[best]),
                )
                return ev

            engine.evaluate = spy  # type: ignore[method-assign,assignment]
            return engine

        runs: dict[str, dict[str, float]] = {}
        kg: dict[str, np.ndarray] = {}
        where: dict[str, list[str]] = {}
        replay.make_engine = wrapped  # type: ignore[assignment]
        try:
            for name in ("carbon-greedy", "lowcarb"):
                p = replay.simulate(pods, nodes, policies[name], series, seed=args.seed)
                acc = replay.account(pods, nodes, p, power, integrals)
                kg[name] = acc.pod_kg
                where[name] = [
                    f"{nodes.zone[k]}/{nodes.model[k]}" if k >= 0 else "-" for k in p.node.tolist()
                ]
                wait = (p.start - p.ready)[p.placed]
                gpu_h = float((pods.gpu_fraction * p.runtime)[p.placed].sum() / 3600.0)
                runs[name] = {
                    "tco2e": round(acc.tco2e, 4),
                    "wait_mean_s": round(float(wait.mean()), 2),
                    "gpu_hours": round(gpu_h, 1),
                }
        finally:
            replay.make_engine = make_engine
        pods_by: collections.Counter[str] = collections.Counter()
        kg_by: collections.Counter[str] = collections.Counter()
        for p_idx, rec in last.items():
            cause = cause_of(rec)
            pods_by[cause] += 1
            kg_by[cause] += max(rec[0], 0.0) * float(pods.duration[p_idx]) / 3600.0 / 1000.0
        print(f"load x{scale:g}, {args.year}, seed {args.seed}: {runs}")
        head = "cause (chosen node vs least-gCO2e candidate)"
        print(f"  {head:55s} {'pods':>6s} {'excess kg':>10s}")
        for cause in sorted(pods_by, key=lambda k: -kg_by[k]):
            print(f"  {cause:55s} {pods_by[cause]:6d} {kg_by[cause]:10.1f}")
        by_duration = duration_split(pods.duration, kg["carbon-greedy"], kg["lowcarb"])
        print("  accounted kg by the pod's run time: pods, carbon-greedy, lowcarb, difference")
        for label, row in by_duration.items():
            print(
                f"  {label:>10s} {row['pods']:6d} {row['carbon-greedy']:9.1f} "
                f"{row['lowcarb']:9.1f} {row['lowcarb'] - row['carbon-greedy']:+9.1f}"
            )
        diff = kg["lowcarb"] - kg["carbon-greedy"]
        top = np.argsort(-np.abs(diff))[:TOP_PODS].tolist()
        print(f"  the {TOP_PODS} pods whose placement differs most (accounted kg):")
        for i in top:
            print(
                f"  pod {i:5d} {pods.duration[i] / 86400:6.1f} d  carbon-greedy "
                f"{where['carbon-greedy'][i]:22s} {kg['carbon-greedy'][i]:7.1f}  lowcarb "
                f"{where['lowcarb'][i]:22s} {kg['lowcarb'][i]:7.1f}"
            )
        out.append(
            {
                "load_scale": scale,
                "policies": runs,
                "kg_by_run_time": by_duration,
                "causes": {
                    k: {"pods": pods_by[k], "excess_kg": round(kg_by[k], 1)} for k in pods_by
                },
            }
        )
    line = {
        "benchmark": "placement_why",
        "trace": "full" if args.full else "quick",
        "year": args.year,
        "seed": args.seed,
        "start": args.start,
        "policy": args.policy,
        "known_durations": args.known_durations,
        "levels": out,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
