"""Temporal shifting in the simulator: which batch pods the gate holds, until when, for what
expected saving (on :func:`scheduler.gates.planner.plan_starts`, the gate controller's planner)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.gates.planner import plan_starts
from scheduler.sim.carbon import Integrals
from scheduler.sim.replay import hour_edges
from scheduler.sim.trace import SimPods

FloatArray = npt.NDArray[np.float64]
BATCH_QOS = frozenset({"BE"})


def batch_mask(pods: SimPods) -> npt.NDArray[np.bool_]:
    """Pods the gate may hold (openb QoS ``BE``)."""
    return np.array([q in BATCH_QOS for q in pods.qos], dtype=bool)


@dataclass(frozen=True, slots=True)
class Holds:
    """The gate's plan: release time, hold and expected relative saving of each pod."""

    ready: FloatArray
    hold_s: FloatArray
    expected_saving: FloatArray  # 0 for pods not held


def shift_holds(
    pods: SimPods,
    integrals: Integrals,
    weights: FloatArray,
    slack_h: float,
    how: str,
    min_saving: float = 0.0,
) -> Holds:
    """Release times of batch pods, planned on each pod's expected emissions.

    ``how="mean"`` (carbon-blind placement): the pod's expected intensity is the capacity-
    ``weights``-weighted mean of the zones; the plan is the best start on that profile.
    ``how="best"`` (carbon-aware placement, the gate controller's :func:`scheduler.gates.
    plan_batch`): per zone the best start; the plan is the best zone's best start, the baseline
    the best zone now. Either way a pod is held only when the plan's expected mean intensity over
    its run (its energy does not depend on when it starts) is at least ``min_saving`` below the
    baseline's, and only to a later start.
    """
    if how not in ("mean", "best"):
        raise ValueError(f"shift_holds: how must be 'mean' or 'best' (got {how!r})")
    n = len(pods)
    ready = pods.arrival.copy()
    saving = np.zeros(n)
    idx = np.flatnonzero(batch_mask(pods))
    if idx.size == 0 or slack_h <= 0:
        return Holds(ready, np.zeros(n), saving)
    lo = float(pods.arrival.min())
    hi = float((pods.arrival + pods.duration).max()) + slack_h * 3600 + 3600
    edges = hour_edges(lo, hi)
    per_zone = np.stack([integrals.hourly(z, edges) for z in range(len(integrals.zones))])
    earliest = pods.arrival[idx]
    latest = earliest + slack_h * 3600.0
    dur = pods.duration[idx]
    if how == "mean":
        profile = (weights[:, None] * per_zone).sum(axis=0) / weights.sum()
        plan = plan_starts(edges, profile, earliest, latest, dur)
        start, at, now = plan.start, plan.mean_at_start, plan.mean_now
    else:
        plans = [plan_starts(edges, values, earliest, latest, dur) for values in per_zone]
        at_z = np.stack([p.mean_at_start for p in plans])
        best = np.argmin(at_z, axis=0)
        cols = np.arange(idx.size)
        start = np.stack([p.start for p in plans])[best, cols]
        at = at_z[best, cols]
        now = np.stack([p.mean_now for p in plans]).min(axis=0)
    gain = np.where(now > 0, 1.0 - at / np.where(now > 0, now, 1.0), 0.0)
    hold = (gain >= max(min_saving, 1e-9)) & (start > earliest)
    ready[idx] = np.where(hold, start, earliest)
    saving[idx] = np.where(hold, gain, 0.0)
    return Holds(ready, ready - pods.arrival, saving)
