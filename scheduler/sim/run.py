"""Compare placement policies on one trace and carbon series: options, policies, metrics.

Shared by ``lowcarb simulate`` and ``benchmarks/placement.py`` (one implementation). The
baselines are policies over the same terms the service runs: ``k8s-default`` (kube-scheduler's
LeastAllocated, no carbon), ``bestfit`` and ``fgd`` (``gpu_fit`` alone in that mode),
``carbon-greedy`` (``carbon`` alone on the current intensity), and ``lowcarb`` (the lowcarb policy
file). All use the power model of ``policies/simulation.yaml``.

Temporal shifting (``slack_h`` > 0): batch pods (openb QoS ``BE``) may be held up to that long
for a cleaner start (:func:`shift_holds`, on :func:`scheduler.gates.planner.plan_starts`, the
planner of the gate controller). ``shift-only`` places like k8s-default and plans on the pod's
expected intensity under carbon-blind placement (the capacity-weighted mean of the zones);
``lowcarb-shift`` places like lowcarb and plans as the gate controller does, per zone with the
best zone now as the baseline (a run never hops zones). A pod is held only when the plan lowers
its expected emissions by at least ``min_saving``. The shift saving is measured against the same
placement policy without holds on the same pods (``shift_saved_pct``: fleet total;
``shift_saved_batch_pct``: the batch pods), so the figures add up.

Load levels (``load_levels``, e.g. ``real,60,90``): the same comparison at real arrival times
and with arrivals compressed so that the peak of GPUs allocated by k8s-default is about the given
percentage of the fleet (:func:`find_load_scale`, a bisection on the time-scale factor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from carbon.energy import PowerModel
from carbon.series import HourlySeries
from scheduler.engine import pricing as compile_pricing
from scheduler.policy.model import DEFAULT_POLICY, Policy, Prices, WorkloadClass
from scheduler.policy.validate import load_policy
from scheduler.scoring import Pricing
from scheduler.sim.baselines import Baseline
from scheduler.sim.bound import Bound, spatial_bound
from scheduler.sim.carbon import Integrals
from scheduler.sim.costing import run_cost
from scheduler.sim.inputs import load_inputs, run_series
from scheduler.sim.levels import demand_peak_pct, find_load_scale, parse_load_levels
from scheduler.sim.replay import (
    Placements,
    account,
    binned,
    fastest_speed,
    hour_edges,
    node_speeds,
    simulate,
)
from scheduler.sim.results import (
    BASELINES,
    DEFAULT_ZONES,
    PLACED_LIKE,
    PLANNED_ON,
    QUICK_PODS,
    REFERENCE,
    SHIFT_KEYS,
    SHIFTED,
    SUMMARY_KEYS,
    Comparison,
    Level,
    PolicyRun,
    SimOptions,
    policies_summary,
)
from scheduler.sim.shift import Holds, batch_mask, shift_holds
from scheduler.sim.trace import SimNodes, SimPods

FloatArray = npt.NDArray[np.float64]
#: re-exported: the options and results, the load-level search and the gate holds live in
#: their own modules (sim/results.py, sim/levels.py, sim/shift.py)
__all__ = [
    "BASELINES",
    "DEFAULT_ZONES",
    "PLACED_LIKE",
    "PLANNED_ON",
    "QUICK_PODS",
    "REFERENCE",
    "SHIFTED",
    "SHIFT_KEYS",
    "SUMMARY_KEYS",
    "Comparison",
    "Holds",
    "Level",
    "PolicyRun",
    "SimOptions",
    "batch_mask",
    "demand_peak_pct",
    "find_load_scale",
    "parse_load_levels",
    "policies_summary",
    "shift_holds",
]
REPO = Path(__file__).resolve().parents[2]
SIM_POLICY = REPO / "policies" / "simulation.yaml"
LOWCARB_POLICY = REPO / "policies" / "default.yaml"


def power_model(path: Path | None = None) -> PowerModel:
    """The power section of ``path`` (default: the repo's policies/simulation.yaml)."""
    if path is None and not SIM_POLICY.is_file():
        raise ValueError(
            f"{SIM_POLICY} not found; pass --power FILE with a policy whose power section "
            "lists your GPU models (see policies/simulation.yaml in the lowcarb repository)"
        )
    return load_policy(path or SIM_POLICY).power


def lowcarb_policy(path: Path | None = None) -> Policy:
    """The lowcarb policy: ``path``, else policies/default.yaml, else the embedded default."""
    if path is not None:
        return load_policy(path)
    return load_policy(LOWCARB_POLICY if LOWCARB_POLICY.is_file() else DEFAULT_POLICY)


def _one(power: PowerModel, rank: str, mode: str, duration: str = "1h") -> Baseline:
    cls = WorkloadClass.model_validate({"gpuMode": mode, "expectedDuration": duration})
    return Baseline(Policy(power=power, classes={"default": cls}), rank)


def build_policies(power: PowerModel, lowcarb: Policy) -> dict[str, Policy | Baseline]:
    """The compared policies, all over the same terms and power model: the baselines rank by one
    term (:mod:`scheduler.sim.baselines`), lowcarb by its cost model."""
    # every baseline's gpu_fit filters GPUs and names the GPU a shared pod takes (best fit, as
    # GPU-sharing device plugins do, for k8s-default and carbon-greedy)
    return {
        "k8s-default": _one(power, "least_allocated", "bestfit"),
        "bestfit": _one(power, "gpu_fit", "bestfit"),
        "fgd": _one(power, "gpu_fit", "fgd"),
        "carbon-greedy": _one(power, "carbon", "bestfit", "1s"),
        "lowcarb": lowcarb.model_copy(update={"power": power}),
    }


def shift_saving(
    run: PolicyRun, base: PolicyRun, pods: SimPods, integrals: Integrals
) -> dict[str, float]:
    """The shift run against the same placement policy without holds, on the same pods.

    ``shift_saved_pct``: fleet total (so shift tCO2e = base tCO2e x (1 - saved)).
    ``shift_saved_batch_pct``: the batch pods' emissions in both runs.
    ``gate_saved_pct``: the held pods against starting at arrival on the node they got (the
    ledger's gate counterfactual; blind to where else the holds moved pods).
    """
    total, base_total = run.accounting.pod_kg.sum(), base.accounting.pod_kg.sum()
    batch = batch_mask(pods)
    kg, base_kg = run.accounting.pod_kg[batch].sum(), base.accounting.pod_kg[batch].sum()
    out = {
        "shift_saved_pct": 100.0 * (1.0 - total / base_total) if base_total > 0 else 0.0,
        "shift_saved_batch_pct": 100.0 * (1.0 - kg / base_kg) if base_kg > 0 else 0.0,
    }
    p, acc = run.placements, run.accounting
    held = (run.hold_s > 0) & p.placed
    actual = cf = 0.0
    for z in range(len(integrals.zones)):
        sel = held & (p.zone == z)
        if not sel.any():
            continue
        t0 = p.start[sel] - run.hold_s[sel]
        cf += float((acc.pod_kwh[sel] * integrals.mean(z, t0, t0 + p.runtime[sel])).sum())
        actual += float((acc.pod_kwh[sel] * acc.pod_intensity[sel]).sum())
    out["gate_saved_pct"] = 100.0 * (1.0 - actual / cf) if cf > 0 else 0.0
    return out


def _metrics(
    run: PolicyRun,
    pods: SimPods,
    capacity: float,
    window: tuple[float, float],
    fastest: FloatArray,
    speed: FloatArray,
    pricing: Pricing,
) -> dict[str, float]:
    p = run.placements
    ok = p.placed
    wait = (p.start - p.ready)[ok]
    frac = pods.gpu_fraction
    lo, hi = window
    used = binned(p.start[ok], p.start[ok] + p.runtime[ok], frac[ok], np.array([lo, hi]))
    span = max(hi - lo, 1.0)
    jct = (p.start + p.runtime - pods.arrival)[ok]
    gpu_pods = ok & (pods.gpus > 0)
    slow = fastest[gpu_pods] / speed[p.node[gpu_pods]]
    out = {
        "tco2e": run.accounting.tco2e,
        "unallocated_gpu_pct_mean": 100.0 * (1.0 - float(used[0]) / (capacity * span)),
        "unallocated_gpu_pct_peak": p.unallocated_at_peak_pct,
        "peak_allocated_gpu_pct": p.peak_allocated_gpu_pct,
        "peak_demand_gpus": p.peak_demand_gpus,
        "pods_waiting": float((wait > 0).sum()),
        "wait_mean_s": float(wait.mean()) if wait.size else 0.0,
        "wait_p95_s": float(np.percentile(wait, 95)) if wait.size else 0.0,
        "wait_max_s": float(wait.max()) if wait.size else 0.0,
        "unplaced": float((~ok).sum()),
        "gpu_hours": float((frac * p.runtime)[ok].sum() / 3600.0),
        "energy_kwh": float(run.accounting.pod_kwh.sum()),
        "slowdown_mean": float(slow.mean()) if slow.size else 1.0,
        "jct_p95_s": float(np.percentile(jct, 95)) if jct.size else 0.0,
        "decisions": float(p.decisions),
        "decisions_per_s": p.decisions / max(p.wall_s, 1e-9),
        "wall_s": p.wall_s,
        **run_cost(pricing, pods, p, run.accounting),
    }
    held = run.hold_s > 0
    if held.any():
        out["hold_mean_h"] = float(run.hold_s[held].mean() / 3600.0)
        out["pods_held"] = float(held.sum())
    elif run.name in SHIFTED:
        out["pods_held"] = 0.0
    return out


def priced_with(policies: Mapping[str, Policy | Baseline]) -> Pricing:
    """The prices every run's ``cost_usd`` is counted in: the lowcarb policy's default class's,
    as its engine scores with them."""
    lowcarb = policies.get("lowcarb")
    prices = lowcarb.class_prices("default") if isinstance(lowcarb, Policy) else Prices()
    return compile_pricing(prices)


def run_names(opts: SimOptions) -> list[str]:
    """The policies to run, in table order (k8s-default always; a shift run's base too)."""
    names = [*BASELINES, *(SHIFTED if opts.slack_h > 0 else ())]
    if not opts.policies:
        return names
    unknown = sorted(set(opts.policies) - set(names))
    if unknown:
        raise ValueError(f"--policies: unknown {unknown}; choose from {', '.join(names)}")
    wanted = {REFERENCE, *opts.policies, *(PLACED_LIKE.get(n, n) for n in opts.policies)}
    return [n for n in names if n in wanted]


@dataclass(slots=True)
class _Setup:
    """What every run of one comparison shares: fleet, series, policies, per-pod constants."""

    opts: SimOptions
    zones: tuple[str, ...]
    nodes: SimNodes
    series: dict[str, HourlySeries]
    integrals: Integrals
    power: PowerModel
    policies: dict[str, Policy | Baseline]
    names: list[str]
    fastest: FloatArray
    speed: FloatArray


def run_pods(
    setup: _Setup,
    pods: SimPods,
    *,
    progress: Callable[[str], None] | None = None,
    label: str = "",
    done: Mapping[str, Placements] | None = None,
) -> tuple[dict[str, PolicyRun], Bound, FloatArray]:
    """Every policy (and the bound) on ``pods``; ``done`` holds runs already simulated."""
    opts = setup.opts
    capacity = float(setup.nodes.gpus.sum())
    zone_caps = setup.nodes.gpu_capacity(list(setup.zones))
    results: dict[str, tuple[Placements, Holds | None]] = {}
    for name in setup.names:
        if progress is not None:
            progress(f"{label}{name}")
        holds = None
        ready = None
        if name in SHIFTED:
            holds = shift_holds(
                pods, setup.integrals, zone_caps, opts.slack_h, PLANNED_ON[name], opts.min_saving
            )
            ready = holds.ready
        if done is not None and name in done and holds is None:
            results[name] = (done[name], None)
            continue
        policy = setup.policies[PLACED_LIKE.get(name, name)]
        placed = simulate(
            pods,
            setup.nodes,
            policy,
            setup.series,
            ready=ready,
            seed=opts.seed,
            known_durations=opts.known_durations,
        )
        results[name] = (placed, holds)
    lo = float(pods.arrival.min())
    ends = [float(np.nanmax(p.start + p.runtime)) for p, _ in results.values() if p.placed.any()]
    edges = hour_edges(lo, max(ends) if ends else lo + 3600)
    runs: dict[str, PolicyRun] = {}
    for name, (p, holds) in results.items():
        acc = account(pods, setup.nodes, p, setup.power, setup.integrals, edges)
        hold = holds.hold_s if holds is not None else np.zeros(len(pods))
        runs[name] = PolicyRun(
            name, p, acc, hold, expected_saving=holds.expected_saving if holds else None
        )
    window = (lo, float(pods.arrival.max()) if len(pods) > 1 else lo + 3600)
    prices = priced_with(setup.policies)
    for run in runs.values():
        run.metrics = _metrics(run, pods, capacity, window, setup.fastest, setup.speed, prices)
    for name, run in runs.items():  # the target "no pod unplaced that another policy placed"
        others = [r.placements.placed for n, r in runs.items() if n != name]
        placed_elsewhere = np.logical_or.reduce(others) if others else np.zeros(len(pods), bool)
        lost = ~run.placements.placed & placed_elsewhere
        run.metrics["unplaced_placed_by_others"] = float(lost.sum())
    for name in SHIFTED:
        base = runs.get(PLACED_LIKE[name])
        if name in runs and base is not None:
            runs[name].metrics.update(shift_saving(runs[name], base, pods, setup.integrals))
    if progress is not None:
        progress(f"{label}bound")
    bound = spatial_bound(pods, setup.nodes, setup.power, setup.integrals, edges)
    k8s = runs[REFERENCE].metrics["tco2e"]
    gap = k8s - bound.tco2e
    for run in runs.values():
        m = run.metrics
        m["saved_pct"] = 100.0 * (1.0 - m["tco2e"] / k8s) if k8s > 0 else 0.0
        m["bound_share"] = (k8s - m["tco2e"]) / gap if gap > 1e-12 else 1.0
    return runs, bound, edges


def _level_at(
    setup: _Setup,
    real: SimPods,
    target: str,
    progress: Callable[[str], None] | None,
) -> Level:
    """The comparison at one load level (searching the time-scale factor for a target %)."""
    ref = setup.policies[REFERENCE]
    capacity = float(setup.nodes.gpus.sum())
    if target == "real":
        runs, bound, edges = run_pods(setup, real, progress=progress, label="real: ")
        return Level(
            "real", 1.0, runs[REFERENCE].metrics["peak_allocated_gpu_pct"], real, edges, runs, bound
        )
    goal = float(target)
    cache: dict[float, Placements] = {}

    def measure(scale: float) -> float:
        if progress is not None:
            progress(f"{target} %: load x{scale:.0f} ({REFERENCE})")
        placed = simulate(
            real.scaled(scale),
            setup.nodes,
            ref,
            setup.series,
            seed=setup.opts.seed,
            known_durations=setup.opts.known_durations,
        )
        cache[scale] = placed
        return placed.peak_allocated_gpu_pct

    # every arrival within one second: compressing further changes nothing
    span = float(real.arrival.max() - real.arrival.min())
    max_scale = max(span, 1.0)
    # first guess: the scale whose offered demand peaks at the target (cheap, no simulation)
    lo_s, hi_s = 1.0, max_scale
    for _ in range(40):
        mid = float(np.sqrt(lo_s * hi_s))
        if demand_peak_pct(real.scaled(mid), capacity) < goal:
            lo_s = mid
        else:
            hi_s = mid
    scale, tried = find_load_scale(measure, goal, hi_s, max_scale=max_scale)
    pods = real.scaled(scale)
    runs, bound, edges = run_pods(
        setup, pods, progress=progress, label=f"{target} %: ", done={REFERENCE: cache[scale]}
    )
    peak = runs[REFERENCE].metrics["peak_allocated_gpu_pct"]
    return Level(target, scale, peak, pods, edges, runs, bound, tried)


def compare(opts: SimOptions, *, progress: Callable[[str], None] | None = None) -> Comparison:
    """Run every policy (and the bound) on the same pods, fleet and series; with
    ``opts.load_levels`` also at each load level."""
    real, nodes, _ = load_inputs(opts, scaled=False)
    power = power_model(opts.power)
    series = run_series(opts, real, nodes, power)
    pods = real.scaled(opts.load_scale)
    return compare_on(opts, pods, nodes, series, power, progress=progress, real=real)


def compare_on(
    opts: SimOptions,
    pods: SimPods,
    nodes: SimNodes,
    series: Mapping[str, HourlySeries],
    power: PowerModel,
    *,
    policies: dict[str, Policy | Baseline] | None = None,
    progress: Callable[[str], None] | None = None,
    real: SimPods | None = None,
) -> Comparison:
    """:func:`compare` on given inputs (``real``: the pods at real arrival times, for levels)."""
    zones = tuple(series)
    series = dict(series)
    policies = policies or build_policies(power, lowcarb_policy(opts.policy))
    setup = _Setup(
        opts,
        zones,
        nodes,
        series,
        Integrals.of(series),
        power,
        policies,
        run_names(opts),
        fastest_speed(pods, nodes, power),
        node_speeds(nodes, power),
    )
    runs, bound, edges = run_pods(setup, pods, progress=progress)
    levels: list[Level] = []
    real = real if real is not None else pods
    for target in opts.load_levels:
        if target == "real" and opts.load_scale == 1:
            peak = runs[REFERENCE].metrics["peak_allocated_gpu_pct"]
            levels.append(Level("real", 1.0, peak, pods, edges, runs, bound))
        else:
            levels.append(_level_at(setup, real, target, progress))
    return Comparison(opts, zones, pods, nodes, series, edges, runs, bound, power, policies, levels)
