"""Lower bound on emissions of any spatial placement: an LP over pods' GPU-hours (scipy HiGHS).

Each pod runs at its trace times (no waiting); in every hour its run-seconds may be split over the
(zone, GPU model) groups it is allowed on, under each group's GPU capacity in that hour, at the
cost of the group's power and the zone's intensity in that hour. Fragmentation, CPU/memory
capacity and the no-migration rule are ignored: it is the best any spatial placement could do.

A GPU model of ``relativeSpeed`` s runs a trace-second of work in 1/s seconds and is charged 1/s of
the energy at the intensity of the hour the work was due; it holds min(1, 1/s) GPU-seconds of that
hour (a slower GPU's stretch into later hours is not counted: a relaxation). With mixed speeds the
intensity hour is an approximation, so the bound can sit a fraction of a percent above a lucky
policy; with one speed it is exact.

Pods that share a shape within an hour are pooled (their seconds are interchangeable), hours where
every pod fits its cheapest group are solved in closed form, and only the congested hours go to one
sparse HiGHS LP. When an hour's demand exceeds the fleet (all allowed groups full), the excess is
charged at its cheapest group's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog

from carbon.energy import PowerModel
from scheduler.fragmentation import model_matches
from scheduler.sim_carbon import Integrals
from scheduler.sim_trace import SimNodes, SimPods

FloatArray = npt.NDArray[np.float64]
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Bound:
    """The bound's emissions (kg), per zone and per hour (same edges as the simulation)."""

    kg: float
    zone_kg: FloatArray
    hour_kg: FloatArray
    lp_hours: int
    status: str

    @property
    def tco2e(self) -> float:
        return self.kg / 1000.0


def _pieces(
    start: FloatArray, end: FloatArray, edges: FloatArray
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
    """(pod, hour bin, seconds) for every hour each [start, end) run overlaps."""
    h0 = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, edges.size - 2)
    h1 = np.clip(np.searchsorted(edges, end, side="left") - 1, h0, edges.size - 2)
    count = h1 - h0 + 1
    pod = np.repeat(np.arange(start.size), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    hour = h0[pod] + offset
    secs = np.minimum(end[pod], edges[hour + 1]) - np.maximum(start[pod], edges[hour])
    return pod, hour, np.clip(secs, 0.0, None)


def spatial_bound(
    pods: SimPods,
    nodes: SimNodes,
    power: PowerModel,
    integrals: Integrals,
    edges: FloatArray,
) -> Bound:
    """Minimum location-based emissions of ``pods`` at their trace times (see module doc)."""
    zones = list(integrals.zones)
    z_of = np.array([zones.index(z) for z in nodes.zone])
    models = sorted(set(nodes.model))
    m_of = np.array([models.index(m) for m in nodes.model])
    groups = [(z, m) for z in range(len(zones)) for m in range(len(models))]
    cap = np.array([float(nodes.gpus[(z_of == z) & (m_of == m)].sum()) for z, m in groups])
    has = cap > 0
    groups = [g for g, ok in zip(groups, has, strict=True) if ok]
    cap = cap[has]
    g_zone = np.array([z for z, _ in groups])
    g_watts = np.array([power.gpu(models[m]).watts for _, m in groups])
    g_speed = np.array([power.gpu(models[m]).relativeSpeed for _, m in groups])
    pue = np.array([power.pue_for(zones[z]) for z in g_zone])
    hourly_ci = np.stack([integrals.hourly(z, edges) for z in range(len(zones))])  # [Z, H]
    frac = pods.gpu_fraction
    host = power.cpuWattsPerCore * pods.cpu_milli / 1000.0 + power.memoryWattsPerGiB * (
        pods.mem_bytes / 2**30
    )
    # allowed groups per distinct model constraint
    allow_by_spec: dict[tuple[str, ...], npt.NDArray[np.bool_]] = {}
    for spec in set(pods.models):
        ok_model = [not spec or any(model_matches(w, mo) for w in spec) for mo in models]
        allow_by_spec[spec] = np.array([ok_model[m] for _, m in groups])
    spec_ids = {spec: k for k, spec in enumerate(allow_by_spec)}
    allow = np.stack(list(allow_by_spec.values()))  # [S, G]
    pod_spec = np.array([spec_ids[s] for s in pods.models])

    start = pods.arrival
    end = pods.arrival + pods.duration
    pod, hour, secs = _pieces(start, end, edges)
    keep = secs > 0
    pod, hour, secs = pod[keep], hour[keep], secs[keep]
    # pool pieces of identical shape within an hour
    key = np.stack([hour, pod_spec[pod], np.round(frac[pod] * 1000), np.round(host[pod] * 1000)])
    uniq, inv = np.unique(key, axis=1, return_inverse=True)
    inv = inv.ravel()
    secs_k = np.asarray(np.bincount(inv, weights=secs), dtype=np.float64)
    h_k = uniq[0].astype(np.int64)
    spec_k = uniq[1].astype(np.int64)
    frac_k = np.asarray(uniq[2] / 1000.0, dtype=np.float64)
    host_k = np.asarray(uniq[3] / 1000.0, dtype=np.float64)
    # cost per second of pooled shape k in group g (grams)
    gpu_pod = frac_k[:, None] > 0
    slow = np.where(gpu_pod, 1.0 / g_speed[None, :], 1.0)  # seconds per trace-second
    rate = (frac_k[:, None] * g_watts[None, :] + host_k[:, None]) * slow * pue[None, :] / 3.6e6
    cost = rate * hourly_ci[g_zone][:, h_k].T  # [K, G] g per second
    cost = np.where(allow[spec_k], cost, np.inf)
    cheapest = np.argmin(cost, axis=1).astype(np.int64)
    best_cost = cost[np.arange(cost.shape[0]), cheapest]
    # closed form where every shape fits its cheapest group
    hours = edges.size - 1
    width = np.diff(edges)
    load = np.zeros((hours, len(groups)))
    hold = np.minimum(1.0, 1.0 / g_speed)  # GPU-seconds held per trace-second of work
    np.add.at(load, (h_k, cheapest), frac_k * secs_k * hold[cheapest])
    over = np.asarray((load > cap[None, :] * width[:, None] + 1e-6).any(axis=1), dtype=bool)
    grams_k = best_cost * secs_k
    congested = np.flatnonzero(over)
    status = "closed form"
    zone_g = np.zeros(len(zones))
    if congested.size:
        lp_rows = np.flatnonzero(over[h_k])
        grams_k[lp_rows], by_group = _solve(
            lp_rows, h_k, secs_k, frac_k, cost, best_cost, cheapest, cap / hold, width
        )
        np.add.at(zone_g, g_zone, by_group)
        status = f"HiGHS LP over {congested.size} congested hours"
        closed: npt.NDArray[np.bool_] = np.ones(grams_k.size, dtype=bool)
        closed[lp_rows] = False
    else:
        closed = np.ones(grams_k.size, dtype=bool)
    zone_g += np.bincount(g_zone[cheapest[closed]], weights=grams_k[closed], minlength=len(zones))
    zone_kg = zone_g / 1000.0
    hour_kg = np.bincount(h_k, weights=grams_k, minlength=hours) / 1000.0
    return Bound(float(grams_k.sum() / 1000.0), zone_kg, hour_kg, int(congested.size), status)


def _solve(
    rows: npt.NDArray[np.int64],
    h_k: npt.NDArray[np.int64],
    secs_k: FloatArray,
    frac_k: FloatArray,
    cost: FloatArray,
    best_cost: FloatArray,
    cheapest: npt.NDArray[np.int64],
    cap: FloatArray,
    width: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """One LP over the pooled shapes of the congested hours: grams per row and per group."""
    n_g = cap.size
    finite = np.isfinite(cost[rows])
    r_idx, g_idx = np.nonzero(finite)
    n_x = r_idx.size
    n_r = rows.size
    # variables: x (seconds of shape r in group g), then overflow o_r (seconds beyond capacity).
    # Overflow is priced above every group so capacity is used first, then re-priced at the
    # cheapest group: what still does not fit in that hour is charged at the cheapest rate.
    worst = np.where(np.isfinite(cost[rows]), cost[rows], -np.inf).max(axis=1)
    c = np.concatenate([cost[rows][r_idx, g_idx], worst * 2.0 + 1e-12])
    # each shape's seconds are all placed: sum_g x_rg + o_r = secs_r
    a_eq = sp.csr_matrix(
        (
            np.ones(n_x + n_r),
            (np.concatenate([r_idx, np.arange(n_r)]), np.arange(n_x + n_r)),
        ),
        shape=(n_r, n_x + n_r),
    )
    b_eq = secs_k[rows]
    # capacity per (hour, group): sum_r frac_r x_rg <= cap_g * width_h
    hours = np.unique(h_k[rows])
    h_pos = np.searchsorted(hours, h_k[rows])
    cap_row = h_pos[r_idx] * n_g + g_idx
    a_ub = sp.csr_matrix(
        (frac_k[rows][r_idx], (cap_row, np.arange(n_x))), shape=(hours.size * n_g, n_x + n_r)
    )
    b_ub = (cap[None, :] * width[hours][:, None]).ravel()
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"bound LP failed: {res.message}")
    x = res.x
    grams_x = c[:n_x] * x[:n_x]
    grams_o = best_cost[rows] * x[n_x:]
    per_row = np.bincount(r_idx, weights=grams_x, minlength=n_r) + grams_o
    by_group = np.bincount(g_idx, weights=grams_x, minlength=n_g).astype(np.float64)
    by_group += np.bincount(cheapest[rows], weights=grams_o, minlength=n_g)
    return np.asarray(per_row, dtype=np.float64), by_group
