"""Compare placement policies on one trace and carbon series: options, policies, metrics.

Shared by ``lowcarb simulate`` and ``benchmarks/placement.py`` (one implementation). The
baselines are policies over the same terms the service runs: ``k8s-default`` (kube-scheduler's
LeastAllocated, no carbon), ``bestfit`` and ``fgd`` (``gpu_fit`` alone in that mode),
``carbon-greedy`` (``carbon`` alone on the current intensity), and ``lowcarb`` (the lowcarb policy
file). All use the power model of ``policies/simulation.yaml``. With ``slack_h`` > 0, batch pods
(openb QoS ``BE``) may be held up to that long for a cleaner start (:mod:`scheduler.gates.planner`):
``shift-only`` plans on the capacity-weighted mean of the zones and places like k8s-default,
``lowcarb-shift`` plans on the cleanest zone and places like lowcarb. Both use
:func:`scheduler.gates.planner.plan_starts`, the planner of the gate controller, and hold a pod only
when the plan saves at least ``min_saving`` (the policy's ``temporalShift.minSaving`` default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from carbon.energy import PowerModel
from carbon.series import HourlySeries
from scheduler.gates.planner import plan_starts
from scheduler.policy.model import DEFAULT_POLICY, Policy, WorkloadClass
from scheduler.policy.validate import load_policy
from scheduler.sim.bound import Bound, spatial_bound
from scheduler.sim.carbon import Integrals, load_series, parse_start, year_start
from scheduler.sim.replay import Accounting, Placements, account, binned, hour_edges, simulate
from scheduler.sim.trace import SimNodes, SimPods, load_nodes, load_pods, place_nodes
from scheduler.sim.trace import resolve_pod_file as resolve_trace

FloatArray = npt.NDArray[np.float64]
REPO = Path(__file__).resolve().parents[2]
SIM_POLICY = REPO / "policies" / "simulation.yaml"
LOWCARB_POLICY = REPO / "policies" / "default.yaml"
DEFAULT_ZONES = ("NO", "GB", "DE-LU", "US-CAL-CISO", "US-TEX-ERCO", "IN-WE")
BASELINES = ("k8s-default", "bestfit", "fgd", "carbon-greedy", "lowcarb")
SHIFTED = ("shift-only", "lowcarb-shift")
PLACED_LIKE = {"shift-only": "k8s-default", "lowcarb-shift": "lowcarb"}
QUICK_PODS = 2000
BATCH_QOS = frozenset({"BE"})


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Everything that defines one comparison run (CLI and benchmark options)."""

    zones: tuple[str, ...] = DEFAULT_ZONES
    year: int = 2022
    start: str | None = None  # ISO date the trace's time 0 is aligned to (default: Jan 1)
    load_scale: float = 1.0
    seed: int = 0
    trace: str = "default"
    quick: bool = False
    pods: int | None = None  # first N pods (``quick`` means 2,000)
    slack_h: float = 0.0
    min_saving: float = 0.1  # hold only when the plan saves this share (TemporalShift default)
    lwa: str | None = None  # single-zone Let's Wait Awhile setting: DE, GB or FR (2020)
    policy: Path | None = None  # the lowcarb policy
    power: Path | None = None  # policies/simulation.yaml
    nodes: Path | None = None
    policies: tuple[str, ...] = ()  # subset to run (default: all)


@dataclass(slots=True)
class PolicyRun:
    name: str
    placements: Placements
    accounting: Accounting
    hold_s: FloatArray
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Comparison:
    options: SimOptions
    zones: tuple[str, ...]
    pods: SimPods
    nodes: SimNodes
    series: dict[str, HourlySeries]
    edges: FloatArray
    runs: dict[str, PolicyRun]
    bound: Bound
    power: PowerModel
    policies: dict[str, Policy]

    def summary(self) -> dict[str, Any]:
        """The benchmark's JSON line (``{"benchmark": "placement", ...}``)."""
        pol: dict[str, Any] = {}
        for name, run in self.runs.items():
            m = run.metrics
            pol[name] = {
                k: round(m[k], 4 if k in ("bound_share", "tco2e") else 2)
                for k in (
                    "tco2e",
                    "saved_pct",
                    "bound_share",
                    "unallocated_gpu_pct_mean",
                    "unallocated_gpu_pct_peak",
                    "pods_waiting",
                    "wait_mean_s",
                    "wait_p95_s",
                    "decisions_per_s",
                )
                if k in m
            }
            for extra in ("hold_mean_h", "shift_saved_pct"):
                if extra in m:
                    pol[name][extra] = round(m[extra], 2)
        k8s = self.runs["k8s-default"].metrics["tco2e"] if "k8s-default" in self.runs else None
        pol["bound"] = {
            "tco2e": round(self.bound.tco2e, 4),
            "saved_pct": round(100 * (1 - self.bound.tco2e / k8s), 2) if k8s else None,
        }
        opts = self.options
        return {
            "benchmark": "placement",
            "zones": list(self.zones),
            "year": 2020 if opts.lwa else opts.year,
            "trace": opts.trace,
            "pods": len(self.pods),
            "load_scale": opts.load_scale,
            "slack_h": opts.slack_h,
            "min_saving": opts.min_saving,
            "seed": opts.seed,
            "policies": pol,
        }


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


def _one(power: PowerModel, weights: dict[str, float], mode: str, duration: str = "1h") -> Policy:
    cls = WorkloadClass.model_validate(
        {"weights": weights, "gpuMode": mode, "expectedDuration": duration}
    )
    return Policy(power=power, classes={"default": cls})


def build_policies(power: PowerModel, lowcarb: Policy) -> dict[str, Policy]:
    """The compared policies, all over the same terms and power model."""
    # gpu_fit with weight 0 still filters GPUs and names the GPU a shared pod takes (best fit,
    # as GPU-sharing device plugins do); it does not score.
    return {
        "k8s-default": _one(power, {"least_allocated": 1.0, "gpu_fit": 0.0}, "bestfit"),
        "bestfit": _one(power, {"gpu_fit": 1.0}, "bestfit"),
        "fgd": _one(power, {"gpu_fit": 1.0}, "fgd"),
        "carbon-greedy": _one(power, {"carbon": 1.0, "gpu_fit": 0.0}, "bestfit", "1s"),
        "lowcarb": lowcarb.model_copy(update={"power": power}),
    }


def sim_zones(opts: SimOptions) -> tuple[str, ...]:
    """The zones of the run (the single Let's Wait Awhile zone in that mode)."""
    return (opts.lwa.upper(),) if opts.lwa else opts.zones


def load_inputs(opts: SimOptions) -> tuple[SimPods, SimNodes, float]:
    """Pods (epoch times), nodes placed in zones, and the epoch of the trace's time 0."""
    pods = load_pods(resolve_trace(opts.trace))
    limit = QUICK_PODS if opts.quick and opts.pods is None else opts.pods
    if limit is not None:
        pods = pods.head(limit)
    pods = pods.scaled(opts.load_scale)
    zones = sim_zones(opts)
    t0 = parse_start(opts.start) if opts.start else year_start(2020 if opts.lwa else opts.year)
    pods = SimPods(
        pods.names,
        pods.cpu_milli,
        pods.mem_bytes,
        pods.gpus,
        pods.gpu_milli,
        pods.models,
        pods.qos,
        pods.arrival + t0,
        pods.duration,
    )
    nodes = place_nodes(load_nodes(opts.nodes), zones, opts.seed)
    return pods, nodes, t0


def shift_ready(
    pods: SimPods,
    integrals: Integrals,
    weights: FloatArray,
    slack_h: float,
    how: str,
    min_saving: float = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """Release times for batch pods (``how``: ``mean`` or ``min`` over zones) and their holds."""
    lo = float(pods.arrival.min())
    hi = float((pods.arrival + pods.duration).max()) + slack_h * 3600 + 3600
    edges = hour_edges(lo, hi)
    per_zone = np.stack([integrals.hourly(z, edges) for z in range(len(integrals.zones))])
    if how == "min":
        profile = per_zone.min(axis=0)
    else:
        profile = (weights[:, None] * per_zone).sum(axis=0) / weights.sum()
    batch = np.array([q in BATCH_QOS for q in pods.qos])
    ready = pods.arrival.copy()
    if batch.any() and slack_h > 0:
        idx = np.flatnonzero(batch)
        plan = plan_starts(
            edges,
            profile,
            pods.arrival[idx],
            pods.arrival[idx] + slack_h * 3600.0,
            pods.duration[idx],
            min_saving=min_saving,
        )
        ready[idx] = plan.start
    return ready, ready - pods.arrival


def temporal_saving(run: PolicyRun, pods: SimPods, integrals: Integrals) -> dict[str, float]:
    """Saving of the gate holds alone: batch pods against starting at arrival on the same node.

    Separates the temporal effect from placement noise (a held pod may land elsewhere than it
    would have); it is the ledger's gate counterfactual (intensity when held vs at release).
    """
    p, acc = run.placements, run.accounting
    batch = np.array([q in BATCH_QOS for q in pods.qos]) & p.placed
    if not batch.any():
        return {}
    actual = cf = 0.0
    for z in range(len(integrals.zones)):
        sel = batch & (p.zone == z)
        if not sel.any():
            continue
        t0 = p.start[sel] - run.hold_s[sel]
        now = integrals.mean(z, t0, t0 + p.runtime[sel])
        cf += float((acc.pod_kwh[sel] * now).sum())
        actual += float((acc.pod_kwh[sel] * acc.pod_intensity[sel]).sum())
    return {"shift_saved_pct": 100.0 * (1.0 - actual / cf) if cf > 0 else 0.0}


def _metrics(
    run: PolicyRun, pods: SimPods, capacity: float, window: tuple[float, float]
) -> dict[str, float]:
    p = run.placements
    ok = p.placed
    wait = (p.start - p.ready)[ok]
    frac = pods.gpu_fraction
    lo, hi = window
    used = binned(p.start[ok], p.start[ok] + p.runtime[ok], frac[ok], np.array([lo, hi]))
    span = max(hi - lo, 1.0)
    out = {
        "tco2e": run.accounting.tco2e,
        "unallocated_gpu_pct_mean": 100.0 * (1.0 - float(used[0]) / (capacity * span)),
        "unallocated_gpu_pct_peak": p.unallocated_at_peak_pct,
        "peak_demand_gpus": p.peak_demand_gpus,
        "pods_waiting": float((wait > 0).sum()),
        "wait_mean_s": float(wait.mean()) if wait.size else 0.0,
        "wait_p95_s": float(np.percentile(wait, 95)) if wait.size else 0.0,
        "wait_max_s": float(wait.max()) if wait.size else 0.0,
        "unplaced": float((~ok).sum()),
        "decisions": float(p.decisions),
        "decisions_per_s": p.decisions / max(p.wall_s, 1e-9),
        "wall_s": p.wall_s,
    }
    held = run.hold_s > 0
    if held.any():
        out["hold_mean_h"] = float(run.hold_s[held].mean() / 3600.0)
        out["pods_held"] = float(held.sum())
    return out


def compare(opts: SimOptions, *, progress: Any = None) -> Comparison:
    """Run every policy (and the bound) on the same pods, fleet and series."""
    pods, nodes, _ = load_inputs(opts)
    zones = sim_zones(opts)
    lo = float(pods.arrival.min())
    slowest = min(power_model(opts.power).gpu(m).relativeSpeed for m in set(nodes.model))
    longest = float((pods.arrival + pods.duration / min(slowest, 1.0)).max())
    hi = longest + opts.slack_h * 3600 + 30 * 86400
    series = load_series(zones, opts.year, lo, hi, lwa=bool(opts.lwa))
    integrals = Integrals.of(series)
    power = power_model(opts.power)
    policies = build_policies(power, lowcarb_policy(opts.policy))
    names = [*BASELINES, *(SHIFTED if opts.slack_h > 0 else ())]
    if opts.policies:
        unknown = sorted(set(opts.policies) - set(names))
        if unknown:
            raise ValueError(f"--policies: unknown {unknown}; choose from {', '.join(names)}")
        names = [n for n in names if n in opts.policies or n == "k8s-default"]
    capacity = float(nodes.gpus.sum())
    zone_caps = nodes.gpu_capacity(list(zones))
    results: dict[str, tuple[Placements, FloatArray]] = {}
    for name in names:
        if progress is not None:
            progress(name)
        hold = np.zeros(len(pods))
        ready = None
        if name in SHIFTED:
            how = "min" if name == "lowcarb-shift" else "mean"
            ready, hold = shift_ready(
                pods, integrals, zone_caps, opts.slack_h, how, opts.min_saving
            )
        policy = policies[PLACED_LIKE.get(name, name)]
        results[name] = (simulate(pods, nodes, policy, series, ready=ready, seed=opts.seed), hold)
    ends = [float(np.nanmax(p.start + p.runtime)) for p, _ in results.values() if p.placed.any()]
    edges = hour_edges(lo, max(ends) if ends else lo + 3600)
    runs = {
        name: PolicyRun(name, p, account(pods, nodes, p, power, integrals, edges), hold)
        for name, (p, hold) in results.items()
    }
    window = (lo, float(pods.arrival.max()) if len(pods) > 1 else lo + 3600)
    for run in runs.values():
        run.metrics = _metrics(run, pods, capacity, window)
    for name in SHIFTED:
        if name in runs:
            runs[name].metrics.update(temporal_saving(runs[name], pods, integrals))
    if progress is not None:
        progress("bound")
    bound = spatial_bound(pods, nodes, power, integrals, edges)
    k8s = runs["k8s-default"].metrics["tco2e"]
    for run in runs.values():
        m = run.metrics
        m["saved_pct"] = 100.0 * (1.0 - m["tco2e"] / k8s) if k8s > 0 else 0.0
        gap = k8s - bound.tco2e
        m["bound_share"] = (k8s - m["tco2e"]) / gap if gap > 1e-12 else 1.0
    return Comparison(opts, zones, pods, nodes, series, edges, runs, bound, power, policies)
