"""Replay the openb GPU trace with the FGD paper's protocol and report unallocated GPU %.

Protocol (Weng et al., ATC '23, and the authors' simulator): the 1,213-node GPU cluster; the trace's
pods shuffled per seed (seeds 42...), then resampled clones appended until the GPU request reaches
130 % of capacity; no departures; a pod that fits nowhere fails and is not retried. CPU and memory
are filtered as kube-scheduler's NodeResourcesFit does; the GPU filter and every GPU policy are
lowcarb's own code (``scheduler.terms.gpu_fit``, ``scheduler.gpu.fragmentation``), and
``fgd-extender`` goes through the real service path (``scheduler.engine.Engine.evaluate``: filter,
normalise, 0..10 quantisation) with random tie-breaking as kube-scheduler does. The typical pods
are learned from the original trace at 95 % popularity. Arrived GPU counts failed pods; used GPU
counts fractions; unallocated % = 100 - used % at each arrived % (first pod at or past it).

    python benchmarks/fragmentation.py [--quick] [--seeds N] [--trace default|gpushare40|PATH]
    python benchmarks/fragmentation.py --quick --carbon [--year 2022] [--zones NO,GB,...]

Prints a table at arrived = 80/90/95/100/110/130 %, writes a PNG of the curves to
``benchmarks/out/``, and prints one JSON line last.

``--carbon``: the same protocol with every node in a grid zone (each GPU model's nodes dealt
round-robin over the zones, as ``lowcarb simulate`` does) and a real hourly series per zone. Each
pod keeps its trace creation time (aligned to Jan 1 of ``--year``) and duration: a policy that
reads carbon sees the intensity at that time, and a placed pod emits its node's power (the
``policies/simulation.yaml`` model: GPU watts, CPU, memory, PUE) over its run (duration /
the GPU model's relativeSpeed) times the zone's intensity over that run. Two more policies:
``carbon-greedy`` (the carbon term alone, best node) and ``lowcarb`` (the shipped default policy
through the serving engine, every term on, answering kube-scheduler's 0..10 levels with random
ties; its GPU term has seen the trace's pods, as a service running this workload has). Reported
per policy: unallocated GPU % and the tCO2e of the pods placed so far at each arrived %, and a
PNG of fragmentation against emissions. Pods that fail are not placed and emit nothing: compare
tCO2e at equal unallocated %, or read it beside the failed count.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carbon.energy import PowerModel
from carbon.series import HourlySeries, SeriesError, SeriesView
from carbon.testing import FixedView
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.gpu import supply as gpu
from scheduler.gpu.fragmentation import TaskShape, Workload
from scheduler.gpu.workload import typical_workload
from scheduler.scoring import Step, evaluate
from scheduler.sim.baselines import rank_by
from scheduler.sim.carbon import Integrals, load_series, year_start
from scheduler.sim.replay import MemoView, make_engine, node_speeds
from scheduler.sim.run import DEFAULT_ZONES, build_policies, lowcarb_policy, power_model
from scheduler.sim.trace import (
    SimNodes,
    SimPods,
    TraceError,
    load_nodes,
    place_nodes,
    read_pods,
    resolve_pod_file,
)
from scheduler.terms.base import Context, TermScore
from scheduler.terms.gpu_fit import GpuFit, GpuFitArgs, feasibility, score_rows

LEVELS = (80, 90, 95, 100, 110, 130)
POLICIES = (
    "random",
    "least-allocated",
    "bestfit",
    "packing",
    "fgd",
    "fgd-plugin",
    "fgd-extender",
    "fgd-extender-linear",
    "fgd-term",
    "carbon-greedy",
    "lowcarb",
)
#: Run by default. ``fgd-term`` (the term's own ranking, no 0..10 levels) places exactly like
#: ``fgd-extender``, whose rank-aware levels keep the best node alone at 10; ``fgd-extender-linear``
#: shows what a plain round(10 * score) would cost. Both on request (--policies).
DEFAULT_POLICIES = POLICIES[:7]
#: Need ``--carbon`` (nodes in zones, a carbon series); added to the run by it.
CARBON_POLICIES = ("carbon-greedy", "lowcarb")
FIRST_SEED = 42
TUNE_RATIO = 1.3
POPULARITY = 0.95
FGD = GpuFitArgs(gpuMode="fgd")  # the extender policies' class settings
ANCHORS = {"random": 13.75, "packing": 8.20, "bestfit": 7.09, "fgd": 4.77}
AUTHORS = {
    "01-Random": "random",
    "04-GpuPacking": "packing",
    "05-BestFit": "bestfit",
    "06-FGD": "fgd",
}
EXPECTED = "fgd-expected-results/analysis_allo_discrete.csv"


def authors_results(pod_file: Path) -> dict[str, float]:
    """The authors' median unallocated GPU % at 100 % arrived for this trace ({} if unknown)."""
    path = pod_file.parent / EXPECTED
    if not path.is_file():
        return {}
    import pandas as pd

    df = pd.read_csv(path, usecols=["workload", "sc_policy", "100"])
    rows = df[df["workload"] == pod_file.stem]
    medians = rows.groupby("sc_policy")["100"].median()
    return {
        AUTHORS[str(p)]: round(100.0 - float(v), 2) for p, v in medians.items() if str(p) in AUTHORS
    }


OUT_DIR = Path(__file__).resolve().parent / "out"
POWER = PowerModel()


def build_table(nodes: SimNodes, zones: tuple[str, ...] = ()) -> NodeTable:
    """The idle fleet; with ``zones``, each node's zone (index into ``zones``) as dealt."""
    n = len(nodes.names)
    models = sorted({m for m in nodes.model})
    index = {m: i for i, m in enumerate(models)}
    width = max(gpu.MIN_SLOTS, int(nodes.gpus.max()))
    slots = np.arange(width)[None, :] < nodes.gpus[:, None]
    zone = [zones.index(z) for z in nodes.zone] if zones else [-1] * n
    return NodeTable(
        names=list(nodes.names),
        zone=np.array(zone, dtype=np.int32),
        zones=list(zones),
        region=list(nodes.zone) if zones else [""] * n,
        gpu_model=np.array([index[m] for m in nodes.model], dtype=np.int32),
        models=models,
        gpu_total=nodes.gpus.astype(np.int32),
        gpu_free=np.where(slots, gpu.MILLI, 0).astype(np.int32),
        gpu_mem_mib=np.zeros(n, dtype=np.int32),
        cpu_free=nodes.cpu_milli.astype(np.int64).copy(),
        mem_free=nodes.mem_bytes.astype(np.int64).copy(),
        mig_free=np.zeros((n, 0), dtype=np.int32),
        mig_profiles=[],
    )


def demands_of(pods: SimPods) -> list[PodDemand]:
    out = []
    for i in range(len(pods)):
        g = int(pods.gpus[i])
        out.append(
            PodDemand(
                uid=f"pod-{i}",
                namespace="trace",
                name=f"openb-pod-{i:04d}",
                gpus=g,
                gpu_milli=int(pods.gpu_milli[i]) if g else 0,
                models=pods.models[i],
                cpu_milli=int(pods.cpu_milli[i]),
                mem_bytes=int(pods.mem_bytes[i]),
            )
        )
    return out


def trace_workload(pods: SimPods) -> Workload:
    """Typical pods of the original trace (the FGD protocol: 95 % popularity, CPU pods included)."""
    shapes = (
        TaskShape(
            int(pods.cpu_milli[i]),
            int(pods.gpus[i]),
            int(pods.gpu_milli[i]) if pods.gpus[i] else 0,
            pods.models[i],
        )
        for i in range(len(pods))
    )
    return typical_workload(shapes, POPULARITY)


def arrival_order(
    pods: SimPods, capacity_milli: int, rng: np.random.Generator
) -> npt.NDArray[np.intp]:
    """Shuffled trace, then resampled clones until the GPU request reaches 130 % of capacity."""
    order = [int(i) for i in rng.permutation(len(pods))]
    total = int(pods.total_gpu_milli.sum())
    target = TUNE_RATIO * capacity_milli
    per_gpu = pods.gpu_milli
    while True:  # the authors' simulator stops when the next clone's per-GPU milli would overflow
        i = int(rng.integers(len(pods)))
        if total + int(per_gpu[i]) > target:
            break
        total += int(pods.total_gpu_milli[i])
        order.append(i)
    return np.asarray(order, dtype=np.intp)


@dataclass
class Run:
    policy: str
    seed: int
    arrived_pct: npt.NDArray[np.float64]
    used_pct: npt.NDArray[np.float64]
    failed: int
    seconds: float
    kg_cum: npt.NDArray[np.float64] | None = None  # --carbon: kg of the pods placed so far
    placed: npt.NDArray[np.bool_] | None = None  # per arrival: the pod was placed

    def _step(self, level: float) -> int:
        idx = int(np.searchsorted(self.arrived_pct, level - 1e-9))
        return min(idx, len(self.used_pct) - 1)

    def unallocated_at(self, level: float) -> float:
        return float(100.0 - self.used_pct[self._step(level)])

    def tco2e_at(self, level: float) -> float:
        """tCO2e of the pods placed by the first pod at or past ``level`` % arrived."""
        if self.kg_cum is None:
            raise ValueError("tco2e_at: this run had no carbon setup (--carbon)")
        return float(self.kg_cum[self._step(level)] / 1000.0)


def both_placed(a: Run, b: Run, capacity_gpus: float, level: float = 100.0) -> dict[str, float]:
    """``a`` against ``b`` (same seed, so the same arrivals) by the first pod at or past
    ``level`` % arrived: the tCO2e of the arrivals both placed, and of those only one placed
    (with their GPUs, from the arrived curve): a policy that places more work emits more, and
    this separates that from where it put the work both placed."""
    if a.kg_cum is None or b.kg_cum is None or a.placed is None or b.placed is None:
        raise ValueError("both_placed: runs without a carbon setup (--carbon)")
    if a.seed != b.seed or a.arrived_pct.shape != b.arrived_pct.shape:
        raise ValueError("both_placed: the runs must share a seed (the same arrivals)")
    end = min(a._step(level), b._step(level)) + 1
    kg_a = np.diff(a.kg_cum[:end], prepend=0.0)
    kg_b = np.diff(b.kg_cum[:end], prepend=0.0)
    gpus = np.diff(a.arrived_pct[:end], prepend=0.0) * capacity_gpus / 100.0
    pa, pb = a.placed[:end], b.placed[:end]
    both, only_a, only_b = pa & pb, pa & ~pb, pb & ~pa
    return {
        "both_pods": int(both.sum()),
        "both_tco2e_a": float(kg_a[both].sum() / 1000.0),
        "both_tco2e_b": float(kg_b[both].sum() / 1000.0),
        "only_a_pods": int(only_a.sum()),
        "only_a_gpus": float(gpus[only_a].sum()),
        "only_a_tco2e": float(kg_a[only_a].sum() / 1000.0),
        "only_b_pods": int(only_b.sum()),
        "only_b_gpus": float(gpus[only_b].sum()),
        "only_b_tco2e": float(kg_b[only_b].sum() / 1000.0),
    }


@dataclass(frozen=True, slots=True)
class CarbonSetup:
    """``--carbon``: the zones the nodes are dealt over and the year of their hourly series."""

    zones: tuple[str, ...] = DEFAULT_ZONES
    year: int = 2022


class CarbonWorld:
    """The fleet in zones, the series over the trace's year, and the emissions of placements."""

    def __init__(
        self,
        fleet: SimNodes,
        series: dict[str, HourlySeries],
        power: PowerModel,
        t0: float,
    ) -> None:
        self.zones = tuple(series)
        self.fleet = fleet
        self.series = series
        self.power = power
        self.t0 = t0  # epoch of the trace's time 0
        self.speed = node_speeds(fleet, power)
        self.integrals = Integrals.of(series)
        self.view = SeriesView(series, 0.0)
        self.node_zone = np.array([self.zones.index(z) for z in fleet.zone])

    @classmethod
    def load(cls, setup: CarbonSetup, nodes: SimNodes, pods: SimPods) -> CarbonWorld:
        """Nodes dealt over ``setup.zones``, their ``setup.year`` series, the simulation power."""
        if not pods.has_times:
            raise TraceError(
                "--carbon needs each pod's creation_time and deletion_time; this trace has none "
                "(use e.g. --trace default or gpushare40)"
            )
        fleet = place_nodes(nodes, setup.zones, seed=0)
        power = power_model()
        t0 = year_start(setup.year)
        slowest = float(min(node_speeds(fleet, power).min(), 1.0))
        lo = t0 + float(pods.arrival.min())
        hi = t0 + float((pods.arrival + pods.duration / slowest).max())
        return cls(fleet, load_series(setup.zones, setup.year, lo, hi), power, t0)

    def start_s(self, pods: SimPods, j: int) -> float:
        return self.t0 + float(pods.arrival[j])

    def emissions_kg(
        self, pods: SimPods, pod: npt.NDArray[np.intp], row: npt.NDArray[np.intp]
    ) -> FloatArray:
        """Location-based kg of each placement (``pod`` j on node ``row``) over its whole run."""
        frac = pods.gpu_fraction[pod]
        run = np.where(frac > 0, pods.duration[pod] / self.speed[row], pods.duration[pod])
        start = self.t0 + pods.arrival[pod]
        cores = pods.cpu_milli[pod] / 1000.0
        gib = pods.mem_bytes[pod] / 2**30
        args = zip(row.tolist(), frac.tolist(), cores.tolist(), gib.tolist(), strict=True)
        watts = np.array([self.power.it_watts(self.fleet.model[r], f, c, m) for r, f, c, m in args])
        zone = self.node_zone[row]
        kg = np.zeros(pod.size)
        for z, name in enumerate(self.zones):
            sel = zone == z
            if sel.any():
                mean = self.integrals.mean(z, start[sel], start[sel] + run[sel])
                kwh = watts[sel] * self.power.pue_for(name) * run[sel] / 3.6e6
                kg[sel] = kwh * mean / 1000.0
        return kg


class Clock:
    """The simulated time of the pod being placed (carbon policies read the grid at it)."""

    now = 0.0


Chooser = Callable[[NodeTable, PodDemand, npt.NDArray[np.intp]], tuple[int, int]]
FloatArray = npt.NDArray[np.float64]


def bestfit_plugin(ts: TermScore) -> FloatArray:
    """BestFit as the authors' simulator scores it: integer percent, then min-max to 0..100."""
    q = np.floor(100.0 * ts.raw)
    lo, hi = float(q.min()), float(q.max())
    return np.zeros_like(q) if hi == lo else np.floor((q - lo) * 100.0 / (hi - lo))


def fgd_plugin(ts: TermScore) -> FloatArray:
    """FGD as the authors' simulator scores it: int(100 * sigmoid(fragmentation decrease))."""
    return np.floor(100.0 / (1.0 + np.exp(ts.raw)))


def _pick_max(values: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """Index of the maximum, ties broken uniformly at random (kube-scheduler's selectHost)."""
    top = np.flatnonzero(values == values.max())
    return int(top[0]) if top.size == 1 else int(rng.choice(top))


def _pick_max_ordered(values: npt.NDArray[np.float64], rank: npt.NDArray[np.int64]) -> int:
    """Index of the maximum, ties broken by the lowest node rank.

    The authors' simulator breaks score ties by the smallest node name, and node names get a
    random 4-digit prefix per seed: a fixed random node order per seed.
    """
    top = np.flatnonzero(values == values.max())
    return int(top[0]) if top.size == 1 else int(top[np.argmin(rank[top])])


def make_chooser(
    policy: str,
    rng: np.random.Generator,
    term: GpuFit,
    node_rank: npt.NDArray[np.int64],
) -> Chooser:
    def random_choice(
        table: NodeTable, d: PodDemand, rows: npt.NDArray[np.intp]
    ) -> tuple[int, int]:
        row = int(rng.choice(rows))
        g = -1
        if d.shares_gpu:
            fits = np.flatnonzero(table.gpu_free[row] >= d.gpu_milli)
            g = int(rng.choice(fits))
        return row, g

    def least_allocated(
        table: NodeTable, d: PodDemand, rows: npt.NDArray[np.intp]
    ) -> tuple[int, int]:
        # kube-scheduler NodeResourcesLeastAllocated (cpu, memory; integer 0..100), GPU: best fit
        cpu = (table.cpu_free[rows] - d.cpu_milli) * 100 // CPU_CAP[rows]
        mem = (table.mem_free[rows] - d.mem_bytes) * 100 // MEM_CAP[rows]
        k = _pick_max_ordered(((cpu + mem) // 2).astype(np.float64), node_rank[rows])
        row = int(rows[k])
        g = int(gpu.best_fit_gpu(table.gpu_free[row : row + 1], d.gpu_milli)[0])
        return row, g if d.shares_gpu else -1

    def by_mode(mode: str, plugin: Callable[[TermScore], FloatArray]) -> Chooser:
        def choose(table: NodeTable, d: PodDemand, rows: npt.NDArray[np.intp]) -> tuple[int, int]:
            sub = table.take(rows)
            frag = term.fragmentation_model() if mode == "fgd" else None
            ts = score_rows(sub, d, mode, frag)  # type: ignore[arg-type]
            k = _pick_max_ordered(plugin(ts), node_rank[rows])
            choice = ts.detail.get("gpu_index")
            return int(rows[k]), int(choice[k]) if choice is not None else -1

        return choose

    def extender(
        table: NodeTable, d: PodDemand, rows: npt.NDArray[np.intp], linear: bool = False
    ) -> tuple[int, int]:
        # kube-scheduler sends the nodes that passed its own filters; we answer 0..10 levels
        ctx = Context(
            pod=d,
            table=table.take(rows),
            carbon=FixedView(),  # knows no zone: the GPU-only benchmark never reads carbon
            power=POWER,
            now_s=0.0,
            duration_s=3600.0,
        )
        ev = rank_by(evaluate(ctx, [Step(term, FGD)]), "gpu_fit")  # FGD alone, 0..10 levels
        ok = np.flatnonzero(ev.feasible)
        # linear: what a plain round(10 * score) would answer instead of the rank-aware levels
        levels = np.rint(10.0 * ev.combined[ok]) if linear else ev.levels[ok].astype(np.float64)
        k = int(ok[_pick_max(levels, rng)])
        chosen = ev.terms["gpu_fit"].detail.get("gpu_index")
        return int(rows[k]), int(chosen[k]) if chosen is not None else -1

    if policy == "random":
        return random_choice
    if policy == "least-allocated":
        return least_allocated
    if policy == "bestfit":
        return by_mode("bestfit", bestfit_plugin)
    if policy == "packing":
        return by_mode("packing", lambda ts: ts.normalized)
    if policy == "fgd":
        return by_mode("fgd", lambda ts: -ts.raw)
    if policy == "fgd-plugin":
        return by_mode("fgd", fgd_plugin)
    if policy == "fgd-term":
        return by_mode("fgd", lambda ts: ts.normalized)
    if policy == "fgd-extender":
        return extender
    if policy == "fgd-extender-linear":
        return lambda table, d, rows: extender(table, d, rows, linear=True)
    raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")


CPU_CAP: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
MEM_CAP: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)


def carbon_chooser(
    policy: str,
    rng: np.random.Generator,
    world: CarbonWorld,
    clock: Clock,
    seen: list[PodDemand],
) -> tuple[Chooser, Callable[[PodDemand], None]]:
    """A chooser through the serving engine (``carbon-greedy``, ``lowcarb``) and its observer.

    ``lowcarb`` answers as the extender does (0..10 levels, kube-scheduler's random ties);
    ``carbon-greedy`` takes the best node outright. The engine has observed ``seen`` first.
    """
    policies = build_policies(world.power, lowcarb_policy())
    engine: Engine = make_engine(policies[policy], world.fleet)
    for d in seen:
        engine.observe(d)
    levels = policy == "lowcarb"

    def choose(table: NodeTable, d: PodDemand, rows: npt.NDArray[np.intp]) -> tuple[int, int]:
        view = MemoView(world.view.at(clock.now))
        # the priced model's scarcity reads the whole fleet, as the extender's cluster state does
        share = table.allocated_gpu_share()
        ev = engine.evaluate(d, table.take(rows), view, clock.now, fleet_share=share)
        ok = np.flatnonzero(ev.feasible)
        if ok.size == 0:
            return -1, -1
        values = ev.levels[ok].astype(np.float64) if levels else ev.combined[ok]
        k = int(ok[_pick_max(values, rng)])
        chosen = engine.gpu_index(ev, k)
        return int(rows[k]), chosen[0] if chosen else -1

    return choose, engine.observe


@functools.cache
def carbon_world(setup: CarbonSetup, pod_file: str, node_file: str | None = None) -> CarbonWorld:
    """One per worker process and (setup, trace, nodes): series are read once."""
    nodes = load_nodes(Path(node_file) if node_file else None)
    return CarbonWorld.load(setup, nodes, read_pods(Path(pod_file)))


def simulate(
    policy: str,
    seed: int,
    pod_file: str,
    carbon: CarbonSetup | None = None,
    node_file: str | None = None,
) -> Run:
    global CPU_CAP, MEM_CAP
    started = time.perf_counter()
    nodes = load_nodes(Path(node_file) if node_file else None)
    pods = read_pods(Path(pod_file))
    world = carbon_world(carbon, pod_file, node_file) if carbon is not None else None
    table = build_table(world.fleet, world.zones) if world is not None else build_table(nodes)
    CPU_CAP = table.cpu_free.copy()
    MEM_CAP = table.mem_free.copy()
    capacity = int(nodes.gpus.sum()) * gpu.MILLI
    rng = np.random.default_rng(seed)
    order = arrival_order(pods, capacity, rng)
    demands = demands_of(pods)
    term = GpuFit(workload=trace_workload(pods))
    node_rank = rng.permutation(len(nodes.names)).astype(np.int64)
    clock = Clock()
    observe: Callable[[PodDemand], None] | None = None
    if policy in CARBON_POLICIES:
        if world is None:
            raise ValueError(f"policy {policy!r} reads carbon: run with --carbon")
        choose, observe = carbon_chooser(policy, rng, world, clock, demands)
    else:
        choose = make_chooser(policy, rng, term, node_rank)
    arrived = np.zeros(len(order), dtype=np.float64)
    used = np.zeros(len(order), dtype=np.float64)
    placed_pod: list[int] = []
    placed_step: list[int] = []
    placed_row: list[int] = []
    placed = np.zeros(len(order), dtype=bool)
    arrived_milli = used_milli = failed = 0
    for step, j in enumerate(order.tolist()):
        d = demands[j]
        need = d.gpus * d.gpu_milli
        arrived_milli += need
        if world is not None:
            clock.now = world.start_s(pods, j)
        if observe is not None:
            observe(d)
        ok = (table.cpu_free >= d.cpu_milli) & (table.mem_free >= d.mem_bytes)
        if d.wants_gpu:
            ok &= feasibility(table, d).ok
        rows = np.flatnonzero(ok)
        row, g = choose(table, d, rows) if rows.size else (-1, -1)
        if row < 0:
            failed += 1  # fits nowhere (or the engine's own filters refused every candidate)
        else:
            placed_pod.append(j)
            placed_step.append(step)
            placed_row.append(row)
            placed[step] = True
            table.cpu_free[row] -= d.cpu_milli
            table.mem_free[row] -= d.mem_bytes
            if d.gpus:
                gpu.apply_pod(table.gpu_free[row], d, (g,) if d.shares_gpu and g >= 0 else ())
            used_milli += need
        arrived[step] = 100.0 * arrived_milli / capacity
        used[step] = 100.0 * used_milli / capacity
    kg_cum = None
    if world is not None:
        kg = np.zeros(len(order))
        kg[np.asarray(placed_step, dtype=np.intp)] = world.emissions_kg(
            pods, np.asarray(placed_pod, dtype=np.intp), np.asarray(placed_row, dtype=np.intp)
        )
        kg_cum = np.cumsum(kg)
    seconds = time.perf_counter() - started
    return Run(policy, seed, arrived, used, failed, seconds, kg_cum, placed)


def _job(args: tuple[str, int, str, CarbonSetup | None, str | None]) -> Run:
    return simulate(*args)


def run_all(
    policies: list[str],
    seeds: list[int],
    pod_file: str,
    jobs: int,
    carbon: CarbonSetup | None = None,
    node_file: str | None = None,
) -> dict[str, list[Run]]:
    tasks = [(p, s, pod_file, carbon, node_file) for p in policies for s in seeds]
    results: dict[str, list[Run]] = {p: [] for p in policies}
    if jobs <= 1:
        for t in tasks:
            r = _job(t)
            results[r.policy].append(r)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for r in pool.map(_job, tasks):
                results[r.policy].append(r)
    return results


def median_curves(runs: list[Run]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    grid = np.arange(0, 131, dtype=np.float64)
    values = np.array([[r.unallocated_at(x) for x in grid] for r in runs])
    return grid, np.median(values, axis=0)


def plot(results: dict[str, list[Run]], trace: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for policy, runs in results.items():
        grid, med = median_curves(runs)
        sel = grid >= 60
        ax.plot(grid[sel], med[sel], label=policy)
    ax.set_xlabel("arrived GPU request (% of capacity)")
    ax.set_ylabel("unallocated GPU (% of capacity)")
    ax.set_title(f"openb trace '{trace}': median over {len(next(iter(results.values())))} seeds")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def median_at(runs: list[Run], value: Callable[[Run, float], float]) -> dict[str, float]:
    """Median over seeds of ``value(run, level)`` at each reported arrived level."""
    return {str(lvl): float(np.median([value(r, lvl) for r in runs])) for lvl in LEVELS}


def plot_carbon(results: dict[str, list[Run]], trace: str, setup: CarbonSetup, path: Path) -> None:
    """Fragmentation against emissions: tCO2e by arrived %, and both at 100 % arrived."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    grid = np.arange(60, 131, dtype=np.float64)
    for policy, runs in results.items():
        kg = np.median([[r.tco2e_at(x) for x in grid] for r in runs], axis=0)
        left.plot(grid, kg, label=policy)
        frag = float(np.median([r.unallocated_at(100) for r in runs]))
        co2 = float(np.median([r.tco2e_at(100) for r in runs]))
        right.scatter(frag, co2, s=40)
        right.annotate(policy, (frag, co2), fontsize=8, xytext=(4, 4), textcoords="offset points")
    left.set_xlabel("arrived GPU request (% of capacity)")
    left.set_ylabel("tCO2e of the pods placed so far")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("unallocated GPU % at 100 % arrived (fragmentation)")
    right.set_ylabel("tCO2e at 100 % arrived")
    right.grid(True, alpha=0.3)
    zones = ", ".join(setup.zones)
    fig.suptitle(f"openb '{trace}', FGD protocol, nodes in {zones} ({setup.year} series)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _both_placed_lines(results: dict[str, list[Run]], capacity: float) -> dict[str, object]:
    """Print and return, per seed, lowcarb against carbon-greedy on the pods both placed at
    100 % arrived (:func:`both_placed`)."""
    lc, cg = results.get("lowcarb", []), results.get("carbon-greedy", [])
    by_seed = {r.seed: r for r in cg}
    rows = [(r.seed, both_placed(r, by_seed[r.seed], capacity)) for r in lc if r.seed in by_seed]
    if not rows:
        return {}
    print("at 100 % arrived, lowcarb (a) against carbon-greedy (b): the pods both placed, and")
    print("those only one placed (a policy that places more work emits more)")
    for seed, d in rows:
        delta = 100.0 * (d["both_tco2e_a"] / d["both_tco2e_b"] - 1.0) if d["both_tco2e_b"] else 0.0
        print(
            f"  seed {seed}: both {d['both_pods']:,} pods, {d['both_tco2e_a']:.3f} t against "
            f"{d['both_tco2e_b']:.3f} t ({delta:+.1f} %); only lowcarb {d['only_a_pods']} pods, "
            f"{d['only_a_gpus']:.0f} GPUs, {d['only_a_tco2e']:.3f} t; only carbon-greedy "
            f"{d['only_b_pods']} pods, {d['only_b_gpus']:.0f} GPUs, {d['only_b_tco2e']:.3f} t"
        )
    return {str(seed): {k: round(v, 4) for k, v in d.items()} for seed, d in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 10")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10)")
    parser.add_argument("--trace", default="default", help="default, gpushare40, ... or a CSV")
    parser.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma-separated, from: {', '.join(POLICIES)}",
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--carbon",
        action="store_true",
        help="nodes in grid zones with real hourly series; adds carbon-greedy and lowcarb and "
        "reports the tCO2e of the placed pods",
    )
    parser.add_argument("--year", type=int, default=2022, help="year of the series (--carbon)")
    parser.add_argument("--nodes", default=None, help="node list CSV (default: openb GPU nodes)")
    parser.add_argument(
        "--zones", default=",".join(DEFAULT_ZONES), help="zones the nodes are dealt over (--carbon)"
    )
    args = parser.parse_args(argv)
    seeds_n = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"--policies: unknown {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    carbon = None
    if args.carbon:
        zones = tuple(z.strip() for z in args.zones.split(",") if z.strip())
        if not zones:
            parser.error("--zones: give at least one zone, e.g. --zones NO,GB,DE-LU")
        carbon = CarbonSetup(zones, args.year)
        policies += [p for p in CARBON_POLICIES if p not in policies]
    elif any(p in CARBON_POLICIES for p in policies):
        parser.error(f"--policies: {', '.join(CARBON_POLICIES)} read carbon; add --carbon")
    try:
        pod_file = resolve_pod_file(args.trace)
        capacity = float(load_nodes(Path(args.nodes) if args.nodes else None).gpus.sum())
        if carbon is not None:
            carbon_world(carbon, str(pod_file), args.nodes)  # fails here, not in a worker
    except SeriesError as exc:  # the zones' series (a ValueError: caught first)
        fix = "give zones and a --year that the data holds"
        print(f"error: --zones/--year: {exc}; {fix}", file=sys.stderr)
        return 2
    except (TraceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = list(range(FIRST_SEED, FIRST_SEED + seeds_n))
    started = time.perf_counter()
    results = run_all(policies, seeds, str(pod_file), args.jobs, carbon, args.nodes)
    wall = time.perf_counter() - started
    named = not (Path(args.trace).suffix == ".csv" or Path(args.trace).exists())
    trace_name = args.trace if named else pod_file.stem
    table: dict[str, dict[str, float]] = {}
    header = f"{'policy':<16}" + "".join(f"{lvl:>8}%" for lvl in LEVELS) + "   failed  s/run"
    print(f"openb trace {trace_name!r}, {seeds_n} seeds, unallocated GPU % (median) by arrived %")
    print(header)
    for policy, runs in results.items():
        meds = {
            str(lvl): round(float(np.median([r.unallocated_at(lvl) for r in runs])), 2)
            for lvl in LEVELS
        }
        table[policy] = meds
        fails = int(np.median([r.failed for r in runs]))
        secs = float(np.mean([r.seconds for r in runs]))
        row = f"{policy:<16}" + "".join(f"{meds[str(lvl)]:>9.2f}" for lvl in LEVELS)
        print(f"{row}  {fails:>7}  {secs:5.1f}")
    authors = authors_results(pod_file)
    if authors:
        listed = ", ".join(f"{k} {v}" for k, v in authors.items())
        print(f"authors' results at 100 % arrived (median of their 10 runs): {listed}")
    line: dict[str, object] = {
        "benchmark": "fragmentation",
        "trace": trace_name,
        "seeds": seeds_n,
        "unallocated_pct": table,
    }
    png = OUT_DIR / f"fragmentation_{Path(trace_name).stem}.png"
    plot(results, trace_name, png)
    if carbon is not None:
        where = ", ".join(carbon.zones)
        print(f"tCO2e of the placed pods (median) by arrived %; nodes in {where}, {carbon.year}")
        print(f"{'policy':<16}" + "".join(f"{lvl:>8}%" for lvl in LEVELS))
        tco2e: dict[str, dict[str, float]] = {}
        for policy, runs in results.items():
            meds = {k: round(v, 4) for k, v in median_at(runs, Run.tco2e_at).items()}
            tco2e[policy] = meds
            print(f"{policy:<16}" + "".join(f"{meds[str(lvl)]:>9.3f}" for lvl in LEVELS))
        line["tco2e"] = tco2e
        pairs = _both_placed_lines(results, capacity)
        if pairs:
            line["both_placed_100"] = pairs
        line["zones"] = list(carbon.zones)
        line["year"] = carbon.year
        carbon_png = OUT_DIR / f"fragmentation_carbon_{Path(trace_name).stem}.png"
        plot_carbon(results, trace_name, carbon, carbon_png)
        print(f"fragmentation vs emissions: {carbon_png}")
    print(f"curves: {png}  wall: {wall:.0f} s on {args.jobs} worker(s)")
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
