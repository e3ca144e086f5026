"""Trace-driven placement simulator: the serving engine replayed over arrivals and deletions.

One :func:`simulate` call replays a pod trace against a fleet (a :class:`NodeTable` kept up to date
in place with :mod:`scheduler.gpu.supply`) under one policy. Each scheduling attempt does what
kube-scheduler plus the extender do: the in-tree fit filter (CPU, memory, GPUs; vectorised), then
:meth:`scheduler.engine.Engine.evaluate` over the feasible nodes with a
:class:`carbon.series.SeriesView` at the simulated time, then the best node. Exact ties are broken
at random as kube-scheduler does, with *common random numbers*: the draw is a hash of (seed, pod,
node), so the same pod facing the same tied nodes picks the same one in every run, and two runs
that differ by one policy choice (a gate hold) differ by that choice, not by reshuffled ties.
Pods that fit nowhere are never dropped: they wait in a FIFO queue and are retried each time pods
leave, on the nodes that freed capacity (a shape that just failed is not retried again in the
same round); a pod still waiting when the trace ends is counted as never placed. A pod runs its
trace duration divided by the ``relativeSpeed`` of its node's GPU model (trace durations are
taken as measured on a speed-1.0 GPU) from the moment it is placed. With temporal shifting, a pod
is first held by the gate until its planned start (that hold is reported apart from queue waiting).
Zone indices (``Placements.zone``, the node table's) follow the order of the ``series`` mapping,
i.e. the run's zones, the same order as :class:`scheduler.sim.carbon.Integrals`.

Emissions are location-based: each pod's facility power (power model of its node's GPU model, its
CPU and memory, x PUE of the zone) integrated against its zone's hourly intensity over its actual
run; the hourly energy, GPU use and emissions per zone come from exact integrals of the same runs.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from carbon.energy import PowerModel
from carbon.series import HourlySeries, SeriesView
from carbon.types import Reading, SignalKind, ZoneSeries
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.gpu import supply as gpu
from scheduler.policy.model import Policy
from scheduler.sim.baselines import Baseline, BaselineEngine
from scheduler.sim.carbon import Integrals
from scheduler.sim.trace import SimNodes, SimPods
from scheduler.terms.gpu_fit import feasibility
from scheduler.terms.least_allocated import LeastAllocated

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Placements:
    """Outcome per pod (index = trace row). ``node`` is -1 for a pod that never fitted."""

    node: IntArray
    zone: IntArray  # index into the run's zones, -1 when unplaced
    ready: FloatArray  # when the pod entered the scheduling queue (after any gate hold)
    start: FloatArray  # placement time = start of running (NaN when unplaced)
    runtime: FloatArray  # seconds of running on the chosen node (0 when unplaced)
    gpu_index: list[tuple[int, ...]]
    decisions: int
    wall_s: float
    peak_demand_gpus: float
    unallocated_at_peak_pct: float
    # allocated share of the fleet's GPUs each pod was placed at (what its prices saw; NaN unplaced)
    share: FloatArray
    peak_allocated_gpu_pct: float = 0.0  # most GPUs allocated at once, % of the fleet's GPUs

    @property
    def placed(self) -> npt.NDArray[np.bool_]:
        return self.node >= 0


@dataclass(slots=True)
class _Fleet:
    table: NodeTable
    running_gpus: float = 0.0
    queued_gpus: float = 0.0


def fits(table: NodeTable, pod: PodDemand) -> npt.NDArray[np.bool_]:
    """kube-scheduler's fit filter plus the GPU checks: CPU, memory, GPU slots and model."""
    ok = feasibility(table, pod).ok
    ok &= table.cpu_free >= pod.cpu_milli
    ok &= table.mem_free >= pod.mem_bytes
    return np.asarray(ok)


def make_engine(policy: Policy | Baseline, nodes: SimNodes) -> Engine:
    """The policy's engine (a baseline's ranks by its one term); the LeastAllocated term gets
    each node's allocatable."""
    if isinstance(policy, Policy):
        return Engine(policy)
    if policy.rank_by != "least_allocated":
        return BaselineEngine(policy)
    cap = {
        name: (int(c), int(m))
        for name, c, m in zip(nodes.names, nodes.cpu_milli, nodes.mem_bytes, strict=True)
    }
    return BaselineEngine(policy, terms={"least_allocated": LeastAllocated(capacity=cap)})


class MemoView:
    """A CarbonView that answers repeated questions of one scheduling cycle from memory."""

    def __init__(self, view: SeriesView) -> None:
        self.view = view
        self._means: dict[tuple[str, float, float, str], Reading | None] = {}

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        return self.view.reading(zone, kind)

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        key = (zone, start_s, end_s, kind)
        if key not in self._means:
            self._means[key] = self.view.mean_intensity(zone, start_s, end_s, kind)
        return self._means[key]

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        return self.view.forecast(zone, kind)


def node_speeds(nodes: SimNodes, power: PowerModel) -> FloatArray:
    """``relativeSpeed`` of each node's GPU model (how much faster than the trace's GPUs)."""
    by_model = {m: power.gpu(m).relativeSpeed for m in set(nodes.model)}
    return np.array([by_model[m] for m in nodes.model], dtype=np.float64)


def _shape(pod: PodDemand) -> tuple[object, ...]:
    return (pod.gpus, pod.gpu_milli, pod.cpu_milli, pod.mem_bytes, pod.models)


_MASK = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def tie_keys(seed: int, pod: int, nodes: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """A uniform random key per (seed, pod, node); the tied node with the least key wins.

    A pure function of its arguments (common random numbers): re-running a pod on the same tied
    nodes picks the same node, and removing other nodes from the tie never changes the pick.
    """
    salt = _splitmix(np.array([(seed * 0x100000001B3 + pod * 0x2545F491 + 1) & _MASK], np.uint64))
    return _splitmix((nodes.astype(np.uint64) * _GOLDEN) ^ salt[0])


def fastest_speed(pods: SimPods, nodes: SimNodes, power: PowerModel) -> FloatArray:
    """Per pod, the ``relativeSpeed`` of the fastest GPU model among nodes that could host it
    when idle (GPU count and model, CPU, memory); 1.0 for CPU-only pods, NaN when none can."""
    idle = nodes.table()
    speed = node_speeds(nodes, power)
    out = np.ones(len(pods))
    best: dict[tuple[object, ...], float] = {}
    for i in range(len(pods)):
        d = pods.demand(i)
        if not d.wants_gpu:
            continue
        key = _shape(d)
        if key not in best:
            ok = fits(idle, d)
            best[key] = float(speed[ok].max()) if ok.any() else float("nan")
        out[i] = best[key]
    return out


def simulate(
    pods: SimPods,
    nodes: SimNodes,
    policy: Policy | Baseline,
    series: Mapping[str, HourlySeries],
    *,
    ready: FloatArray | None = None,
    seed: int = 0,
    known_durations: bool = False,
) -> Placements:
    """Replay ``pods`` (times in epoch seconds) on ``nodes`` under ``policy``.

    ``ready`` (default: arrival) is when each pod may first be scheduled (a gate's release time).
    ``known_durations``: the engine is told each pod's real run time (a diagnostic).
    """
    n = len(pods)
    ready_t = pods.arrival.copy() if ready is None else np.asarray(ready, dtype=np.float64)
    fleet = _Fleet(nodes.table(list(series)))
    table = fleet.table
    capacity = float(table.gpu_total.sum())
    engine = make_engine(policy, nodes)
    demands = [pods.demand(i) for i in range(n)]
    frac = pods.gpu_fraction
    node_of = np.full(n, -1, dtype=np.int64)
    start = np.full(n, np.nan)
    placed_share = np.full(n, np.nan)
    runtime = np.zeros(n)
    speed = node_speeds(nodes, (policy if isinstance(policy, Policy) else policy.policy).power)
    chosen: list[tuple[int, ...]] = [()] * n
    order = np.argsort(ready_t, kind="stable").tolist()
    departures: list[tuple[float, int]] = []
    waiting: list[int] = []
    refused: set[int] = set()  # waiting pods the policy refused although they fitted somewhere
    freed: set[int] = set()  # nodes that gained capacity since the waiting pods last failed
    decisions = 0
    peak = (-1.0, 100.0)
    peak_running = 0.0
    base_view = SeriesView(series, 0.0)

    def attempt(p: int, now: float) -> bool:
        nonlocal decisions
        decisions += 1
        d = demands[p]
        mask = fits(table, d)
        if not mask.any():
            return False
        rows = np.flatnonzero(mask)
        share = fleet.running_gpus / capacity if capacity > 0 else 0.0
        known = float(pods.duration[p]) if known_durations else None
        ev = engine.evaluate(
            d,
            table.take(rows),
            MemoView(base_view.at(now)),
            now,
            fleet_share=share,
            duration_s=known,
        )
        if not ev.feasible.any():
            refused.add(p)
            return False
        refused.discard(p)
        combined = np.where(ev.feasible, ev.combined, -np.inf)
        top = np.flatnonzero(combined >= combined.max() - 1e-12)
        if top.size > 1:
            top = top[[int(np.argmin(tie_keys(seed, p, rows[top])))]]
        best = int(top[0])
        node = int(rows[best])
        used = gpu.apply_pod(table.gpu_free[node], d, engine.gpu_index(ev, best))
        table.cpu_free[node] -= d.cpu_milli
        table.mem_free[node] -= d.mem_bytes
        node_of[p] = node
        start[p] = now
        placed_share[p] = share
        chosen[p] = tuple(used)
        fleet.running_gpus += frac[p]
        runtime[p] = float(pods.duration[p]) / (float(speed[node]) if d.wants_gpu else 1.0)
        heapq.heappush(departures, (now + runtime[p], p))
        return True

    def release(p: int) -> None:
        node, d = int(node_of[p]), demands[p]
        milli = d.gpu_milli if d.gpus else 0
        for g in chosen[p]:
            table.gpu_free[node, g] = min(gpu.MILLI, int(table.gpu_free[node, g]) + milli)
        table.cpu_free[node] += d.cpu_milli
        table.mem_free[node] += d.mem_bytes
        fleet.running_gpus -= frac[p]
        freed.add(node)

    def retry(now: float) -> None:
        # Every waiting pod fitted on no node after its last attempt, and since then only the
        # ``freed`` nodes gained capacity: a pod that fits none of them still fits nowhere.
        rows = np.fromiter(freed, dtype=np.int64, count=len(freed))
        freed.clear()
        sub = table.take(rows)
        failed: set[tuple[object, ...]] = set()
        still: list[int] = []
        for p in waiting:
            key = _shape(demands[p])
            if key in failed or (p not in refused and not fits(sub, demands[p]).any()):
                still.append(p)
            elif not attempt(p, now):
                failed.add(key)
                still.append(p)
            else:
                fleet.queued_gpus -= frac[p]
        waiting[:] = still

    def note_peak() -> None:
        nonlocal peak, peak_running
        demand = fleet.running_gpus + fleet.queued_gpus
        if demand > peak[0] + 1e-9:
            peak = (demand, 100.0 * (capacity - fleet.running_gpus) / capacity)
        peak_running = max(peak_running, fleet.running_gpus)

    t0 = time.perf_counter()
    i = 0
    while i < n or departures:
        next_ready = float(ready_t[order[i]]) if i < n else np.inf
        if departures and departures[0][0] <= next_ready:
            now = departures[0][0]
            while departures and departures[0][0] <= now:
                release(heapq.heappop(departures)[1])
            if waiting:
                retry(now)
            else:
                freed.clear()
        else:
            p = order[i]
            i += 1
            engine.observe(demands[p])
            if not attempt(p, next_ready):
                waiting.append(p)
                fleet.queued_gpus += frac[p]
        note_peak()
    wall = time.perf_counter() - t0
    zone = np.where(node_of >= 0, table.zone[np.maximum(node_of, 0)], -1).astype(np.int64)
    return Placements(
        node=node_of,
        zone=zone,
        ready=ready_t,
        start=start,
        runtime=runtime,
        gpu_index=chosen,
        decisions=decisions,
        wall_s=wall,
        peak_demand_gpus=float(max(peak[0], 0.0)),
        unallocated_at_peak_pct=float(peak[1]),
        share=placed_share,
        peak_allocated_gpu_pct=100.0 * peak_running / capacity if capacity > 0 else 0.0,
    )


@dataclass(frozen=True, slots=True)
class Accounting:
    """Energy and emissions of a run: per pod, and per zone and hour."""

    zones: tuple[str, ...]
    edges: FloatArray  # hour boundaries (epoch s)
    pod_kwh: FloatArray
    pod_kg: FloatArray
    pod_intensity: FloatArray  # mean g/kWh over each pod's run
    zone_hour_kwh: FloatArray  # [Z, H]
    zone_hour_kg: FloatArray  # [Z, H]
    zone_hour_gpus: FloatArray  # [Z, H] mean GPUs in use
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tco2e(self) -> float:
        return float(self.pod_kg.sum() / 1000.0)


def pod_power_w(pods: SimPods, nodes: SimNodes, node: IntArray, power: PowerModel) -> FloatArray:
    """IT power of each placed pod on its node's GPU model (0 for unplaced pods)."""
    out = np.zeros(len(pods))
    frac = pods.gpu_fraction
    for p in np.flatnonzero(node >= 0).tolist():
        out[p] = power.it_watts(
            nodes.model[int(node[p])],
            float(frac[p]),
            float(pods.cpu_milli[p]) / 1000.0,
            float(pods.mem_bytes[p]) / 2**30,
        )
    return out


def hour_edges(lo: float, hi: float) -> FloatArray:
    first = np.floor(lo / HOUR) * HOUR
    last = max(np.ceil(hi / HOUR) * HOUR, first + HOUR)
    return np.arange(first, last + HOUR / 2, HOUR)


def binned(start: FloatArray, end: FloatArray, weight: FloatArray, edges: FloatArray) -> FloatArray:
    """Exact weight x seconds of [start, end) intervals falling in each bin of ``edges``."""
    if start.size == 0:
        return np.zeros(edges.size - 1)
    so, eo = np.sort(start), np.sort(end)
    ws = weight[np.argsort(start)]
    we = weight[np.argsort(end)]
    cs, cws = np.concatenate(([0.0], np.cumsum(ws))), np.concatenate(([0.0], np.cumsum(ws * so)))
    ce, cwe = np.concatenate(([0.0], np.cumsum(we))), np.concatenate(([0.0], np.cumsum(we * eo)))
    ks = np.searchsorted(so, edges, side="left")
    ke = np.searchsorted(eo, edges, side="left")
    cum = edges * cs[ks] - cws[ks] - (edges * ce[ke] - cwe[ke])  # integral up to each edge
    return np.diff(cum)


def account(
    pods: SimPods,
    nodes: SimNodes,
    placed: Placements,
    power: PowerModel,
    integrals: Integrals,
    edges: FloatArray | None = None,
) -> Accounting:
    """Location-based energy and emissions of every placed pod over its actual run."""
    zones = integrals.zones
    ok = placed.placed
    start = np.where(ok, placed.start, 0.0)
    end = start + placed.runtime
    if edges is None:
        edges = hour_edges(
            float(start[ok].min()) if ok.any() else 0.0, float(end[ok].max()) if ok.any() else HOUR
        )
    node_zone = [zones.index(z) for z in nodes.zone]
    pue = np.array([power.pue_for(z) for z in zones])
    watts = pod_power_w(pods, nodes, placed.node, power)
    zone = np.array([node_zone[int(k)] if k >= 0 else -1 for k in placed.node.tolist()])
    kwh = np.where(ok, watts * pue[np.maximum(zone, 0)] * placed.runtime / 3.6e6, 0.0)
    intensity = np.zeros(len(pods))
    zh_kwh = np.zeros((len(zones), edges.size - 1))
    zh_kg = np.zeros_like(zh_kwh)
    zh_gpu = np.zeros_like(zh_kwh)
    frac = pods.gpu_fraction
    for z in range(len(zones)):
        sel = ok & (zone == z)
        if not sel.any():
            continue
        intensity[sel] = integrals.mean(z, start[sel], end[sel])
        zh_kwh[z] = binned(start[sel], end[sel], watts[sel] * pue[z] / 3.6e6, edges)
        zh_kg[z] = zh_kwh[z] * integrals.hourly(z, edges) / 1000.0
        zh_gpu[z] = binned(start[sel], end[sel], frac[sel], edges) / np.diff(edges)
    return Accounting(
        zones=tuple(zones),
        edges=edges,
        pod_kwh=kwh,
        pod_kg=kwh * intensity / 1000.0,
        pod_intensity=intensity,
        zone_hour_kwh=zh_kwh,
        zone_hour_kg=zh_kg,
        zone_hour_gpus=zh_gpu,
    )
