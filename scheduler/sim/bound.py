"""Lower bound on emissions of any spatial placement: an LP relaxation solved with scipy HiGHS.

Each pod runs from its trace arrival (no waiting) on one (zone, GPU model) group it is allowed on;
the LP lets it be split fractionally over groups. On a group of ``relativeSpeed`` s a GPU pod runs
duration / s, and its cost is the exact location-based emissions of that run (power model x PUE x
the zone's hourly intensity integrated over the run). Each group's GPUs in use may not exceed its
GPU count in any hour (hourly average, a relaxation of the instantaneous limit). Fragmentation and
CPU/memory capacity are ignored, so no placement that starts pods on arrival can emit less.

Solved by constraint generation: every pod starts on its cheapest group; only the (group, hour)
capacity rows that are violated are added to the LP, which is re-solved until none is. When an
hour's demand exceeds every allowed group, the excess is charged at the pod's cheapest group
(priced above all groups in the LP so capacity is used first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog

from carbon.energy import PowerModel
from scheduler.gpu.fragmentation import model_matches
from scheduler.sim.carbon import Integrals
from scheduler.sim.trace import SimNodes, SimPods

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HOUR = 3600.0
MAX_ROUNDS = 25


@dataclass(frozen=True, slots=True)
class Bound:
    """The bound's emissions (kg), per zone and per hour (same edges as the simulation)."""

    kg: float
    zone_kg: FloatArray
    hour_kg: FloatArray
    lp_hours: int  # (group, hour) capacity rows the LP needed
    status: str

    @property
    def tco2e(self) -> float:
        return self.kg / 1000.0


def _pieces(
    start: FloatArray, end: FloatArray, edges: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """(pod, hour bin, seconds) for every hour each [start, end) run overlaps."""
    h0 = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, edges.size - 2)
    h1 = np.clip(np.searchsorted(edges, end, side="left") - 1, h0, edges.size - 2)
    count = h1 - h0 + 1
    pod = np.repeat(np.arange(start.size), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    hour = h0[pod] + offset
    secs = np.minimum(end[pod], edges[hour + 1]) - np.maximum(start[pod], edges[hour])
    keep = secs > 0
    return pod[keep].astype(np.int64), hour[keep].astype(np.int64), secs[keep]


def spatial_bound(
    pods: SimPods,
    nodes: SimNodes,
    power: PowerModel,
    integrals: Integrals,
    edges: FloatArray,
) -> Bound:
    """Minimum location-based emissions of ``pods`` started at arrival (see module doc)."""
    zones = list(integrals.zones)
    z_of = np.array([zones.index(z) for z in nodes.zone])
    models = sorted(set(nodes.model))
    m_of = np.array([models.index(m) for m in nodes.model])
    pairs = [(z, m) for z in range(len(zones)) for m in range(len(models))]
    caps = [float(nodes.gpus[(z_of == z) & (m_of == m)].sum()) for z, m in pairs]
    groups = [g for g, c in zip(pairs, caps, strict=True) if c > 0]
    cap = np.array([c for c in caps if c > 0])
    n_g, n_p = len(groups), len(pods)
    frac = pods.gpu_fraction
    gpu_pod = frac > 0
    host = power.cpuWattsPerCore * pods.cpu_milli / 1000.0 + power.memoryWattsPerGiB * (
        pods.mem_bytes / 2**30
    )
    allow = np.ones((n_p, n_g), dtype=bool)
    for spec in set(pods.models):
        if spec:
            ok = np.array([any(model_matches(w, models[m]) for w in spec) for _, m in groups])
            allow[np.array([s == spec for s in pods.models])] = ok
    # exact emissions (g) and run end of every pod on every group
    cost = np.full((n_p, n_g), np.inf)
    ends = np.zeros((n_p, n_g))
    for g, (z, m) in enumerate(groups):
        gp = power.gpu(models[m])
        run = np.where(gpu_pod, pods.duration / gp.relativeSpeed, pods.duration)
        ends[:, g] = pods.arrival + run
        watts = frac * gp.watts + host
        mean = integrals.mean(z, pods.arrival, ends[:, g])
        cost[:, g] = np.where(
            allow[:, g], watts * power.pue_for(zones[z]) * run / 3.6e6 * mean, np.inf
        )
    cheapest = np.argmin(cost, axis=1)
    x = np.zeros((n_p, n_g))
    x[np.arange(n_p), cheapest] = 1.0
    overflow = np.zeros(n_p)
    width = np.diff(edges)
    rows: set[tuple[int, int]] = set()
    status = "closed form (no group over capacity)"
    for rounds in range(1, MAX_ROUNDS + 1):
        used = _usage(x, frac, pods.arrival, ends, edges, gpu_pod)  # [G, H] GPU-seconds
        over = np.argwhere(used > cap[:, None] * width[None, :] * (1 + 1e-9) + 1e-6)
        new = {(int(g), int(h)) for g, h in over} - rows
        if not new:
            break
        rows |= new
        x, overflow = _solve(sorted(rows), cost, frac, pods.arrival, ends, edges, cap, gpu_pod)
        status = f"HiGHS LP, {len(rows)} capacity rows, {rounds} rounds"
    else:
        status += " (stopped at the round limit: may sit below the true bound)"
    best = cost[np.arange(n_p), cheapest]
    finite = np.where(np.isfinite(cost), cost, 0.0)
    grams = (x * finite).sum(axis=1) + overflow * best
    zone_g = np.zeros(len(zones))
    hour_g = np.zeros(edges.size - 1)
    for g, (z, _) in enumerate(groups):
        share = x[:, g] + np.where(cheapest == g, overflow, 0.0)
        if not share.any():
            continue
        zone_g[z] += float((share * finite[:, g]).sum())
        run = ends[:, g] - pods.arrival
        rate = np.where(run > 0, share * finite[:, g] / np.where(run > 0, run, 1.0), 0.0)
        sel = share > 0
        hour_g += _binned(pods.arrival[sel], ends[sel, g], rate[sel], edges)
    return Bound(float(grams.sum() / 1000.0), zone_g / 1000.0, hour_g / 1000.0, len(rows), status)


def _binned(start: FloatArray, end: FloatArray, rate: FloatArray, edges: FloatArray) -> FloatArray:
    out = np.zeros(edges.size - 1)
    pod, hour, secs = _pieces(start, end, edges)
    np.add.at(out, hour, rate[pod] * secs)
    return out


def _usage(
    x: FloatArray,
    frac: FloatArray,
    arrival: FloatArray,
    ends: FloatArray,
    edges: FloatArray,
    gpu_pod: npt.NDArray[np.bool_],
) -> FloatArray:
    """GPU-seconds in use per (group, hour) for the fractional assignment ``x``."""
    used = np.zeros((x.shape[1], edges.size - 1))
    for g in range(x.shape[1]):
        sel = np.flatnonzero(gpu_pod & (x[:, g] > 0))
        if sel.size:
            used[g] = _binned(arrival[sel], ends[sel, g], x[sel, g] * frac[sel], edges)
    return used


def _solve(
    rows: list[tuple[int, int]],
    cost: FloatArray,
    frac: FloatArray,
    arrival: FloatArray,
    ends: FloatArray,
    edges: FloatArray,
    cap: FloatArray,
    gpu_pod: npt.NDArray[np.bool_],
) -> tuple[FloatArray, FloatArray]:
    """The LP over every GPU pod's allowed groups with the given capacity rows."""
    n_p, n_g = cost.shape
    cand = np.isfinite(cost) & gpu_pod[:, None]
    p_idx, g_idx = np.nonzero(cand)
    n_x = p_idx.size
    gpu_rows = np.flatnonzero(gpu_pod)
    worst = np.where(np.isfinite(cost), cost, -np.inf).max(axis=1)
    c = np.concatenate([cost[p_idx, g_idx], 2.0 * worst[gpu_rows] + 1e-9])
    slot = np.full(n_p, -1)
    slot[gpu_rows] = np.arange(gpu_rows.size)
    # every GPU pod placed once: sum_g x_pg + overflow_p = 1
    a_eq = sp.csr_matrix(
        (
            np.ones(n_x + gpu_rows.size),
            (
                np.concatenate([slot[p_idx], np.arange(gpu_rows.size)]),
                np.arange(n_x + gpu_rows.size),
            ),
        ),
        shape=(gpu_rows.size, n_x + gpu_rows.size),
    )
    # capacity rows: sum_p x_pg frac_p overlap(p, g, h) <= cap_g * width_h
    var_of = {(int(p), int(g)): k for k, (p, g) in enumerate(zip(p_idx, g_idx, strict=True))}
    r_list, c_list, v_list = [], [], []
    by_group: dict[int, list[tuple[int, int]]] = {}
    for r, (g, h) in enumerate(rows):
        by_group.setdefault(g, []).append((r, h))
    b_ub = np.array([cap[g] * (edges[h + 1] - edges[h]) for g, h in rows])
    for g, items in by_group.items():
        pods_g = np.flatnonzero(cand[:, g])
        pod, hour, secs = _pieces(arrival[pods_g], ends[pods_g, g], edges)
        want = {h: r for r, h in items}
        for k in range(pod.size):
            row = want.get(int(hour[k]))
            if row is not None:
                p = int(pods_g[pod[k]])
                r_list.append(row)
                c_list.append(var_of[(p, g)])
                v_list.append(float(frac[p] * secs[k]))
    a_ub = sp.csr_matrix((v_list, (r_list, c_list)), shape=(len(rows), n_x + gpu_rows.size))
    res = linprog(
        c,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=np.ones(gpu_rows.size),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"bound LP failed: {res.message}")
    x = np.zeros((n_p, n_g))
    cpu_rows = np.flatnonzero(~gpu_pod)
    if cpu_rows.size:
        x[cpu_rows, np.argmin(cost[cpu_rows], axis=1)] = 1.0
    x[p_idx, g_idx] = res.x[:n_x]
    overflow = np.zeros(n_p)
    overflow[gpu_rows] = res.x[n_x:]
    return x, overflow
