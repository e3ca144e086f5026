"""Temporal-shift planner, the one shared by the gate controller and the simulator (pure numpy).

:func:`plan_starts` finds the best start in [earliest, latest] for many pods over one intensity
profile. For each pod, candidate starts are ``earliest`` and every interval boundary of the
profile in (earliest, latest], plus ``latest`` (the latest safe start, i.e. deadline minus expected
duration). The chosen start minimises the mean intensity over [start, start + duration); ties go to
the earliest candidate, so a pod is never held for nothing. Means come from the cumulative
integral of the profile, so the cost is O(pods x candidates) with no Python loop over pods.
The placement simulator (``--slack``) calls it on a zone profile.

:func:`plan_batch` is the gate controller's view of the same planner: per pod, the zones it may
run in, each zone's forecast from the carbon cache (a :class:`carbon.types.CarbonView`), one
:func:`plan_starts` per zone over the pods allowed there, and the best zone per pod; a pod is held
only when that plan starts later than a minimum hold and saves at least its ``minSaving``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from carbon.types import CarbonView, ZoneSeries

FloatArray = npt.NDArray[np.float64]


def relative_saving(mean_at: FloatArray, mean_now: FloatArray) -> FloatArray:
    """``1 - mean_at / mean_now`` per pod, 0 where there is no positive baseline."""
    safe = np.where(mean_now > 0, mean_now, 1.0)
    return np.asarray(np.where(mean_now > 0, 1 - mean_at / safe, 0.0))


@dataclass(frozen=True, slots=True)
class Plan:
    """Per pod: chosen start, mean intensity over the run from there and from ``earliest``."""

    start: FloatArray
    mean_at_start: FloatArray
    mean_now: FloatArray

    @property
    def saving(self) -> FloatArray:
        """Expected relative saving of each plan against starting at once (0 when not held)."""
        return relative_saving(self.mean_at_start, self.mean_now)


def window_means(
    edges: FloatArray, cum: FloatArray, values: FloatArray, start: FloatArray, dur: FloatArray
) -> FloatArray:
    """Mean of the profile over [start, start + dur) (the value at ``start`` when dur is 0)."""
    idx = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, values.size - 1)
    safe = np.where(dur > 0, dur, 1.0)
    avg = (np.interp(start + dur, edges, cum) - np.interp(start, edges, cum)) / safe
    return np.asarray(np.where(dur > 0, avg, values[idx]), dtype=np.float64)


def plan_starts(
    edges: FloatArray,
    values: FloatArray,
    earliest: FloatArray,
    latest: FloatArray,
    duration: FloatArray,
    *,
    min_saving: float = 0.0,
) -> Plan:
    """Best start per pod over an interval profile (``edges``: n+1 boundaries, ``values``: n).

    A pod whose best plan saves less than ``min_saving`` (relative) starts at ``earliest``.
    ``latest`` below ``earliest`` (expected duration longer than the window) means start at once.
    """
    edges = np.asarray(edges, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    earliest = np.asarray(earliest, dtype=np.float64)
    latest = np.maximum(np.asarray(latest, dtype=np.float64), earliest)
    duration = np.maximum(np.asarray(duration, dtype=np.float64), 0.0)
    if edges.size != values.size + 1:
        raise ValueError("plan_starts: edges must have one more element than values")
    cum = np.concatenate(([0.0], np.cumsum(values * np.diff(edges))))
    now = window_means(edges, cum, values, earliest, duration)
    if earliest.size == 0:
        return Plan(earliest.copy(), now, now)
    step = float(np.min(np.diff(edges))) if edges.size > 1 else 3600.0
    width = int(np.ceil(float(np.max(latest - earliest)) / step)) + 2
    first = np.searchsorted(edges, earliest, side="right")  # first boundary after earliest
    k = first[:, None] + np.arange(width)[None, :]
    cand = edges[np.clip(k, 0, edges.size - 1)]
    cand = np.where(k < edges.size, cand, np.inf)
    cand = np.where(cand <= latest[:, None], cand, np.inf)
    cand = np.concatenate((earliest[:, None], cand, latest[:, None]), axis=1)
    valid = np.isfinite(cand)
    dur = np.broadcast_to(duration[:, None], cand.shape)
    means = window_means(edges, cum, values, np.where(valid, cand, 0.0), dur)
    means = np.where(valid, means, np.inf)
    best = np.argmin(means, axis=1)
    rows = np.arange(earliest.size)
    start = cand[rows, best]
    at = means[rows, best]
    saving = np.where(now > 0, 1 - at / np.where(now > 0, now, 1.0), 0.0)
    keep = saving < max(min_saving, 1e-12)
    start = np.where(keep, earliest, start)
    at = np.where(keep, now, at)
    return Plan(np.asarray(start), np.asarray(at), now)


# --- the gate controller's batch: many pods, each over the zones it may run in -----------------


@dataclass(slots=True)
class BatchPlan:
    """Per pod: start time, mean intensity from there and from now, best zone (-1: none)."""

    start: FloatArray
    mean_at: FloatArray
    mean_now: FloatArray
    zone: npt.NDArray[np.int64]
    hold: npt.NDArray[np.bool_]
    zones: list[str]

    @property
    def saving(self) -> FloatArray:
        return relative_saving(self.mean_at, self.mean_now)

    @property
    def has_forecast(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.zone >= 0)


def forecast_profile(
    series: ZoneSeries, t0: float, t1: float
) -> tuple[FloatArray, FloatArray, float] | None:
    """Edges/values covering [t0, t1] (first/last value held flat), and the forecast's end."""
    starts = np.asarray(series.starts, dtype=np.float64)
    ends = np.asarray(series.ends, dtype=np.float64)
    values = np.asarray(series.values, dtype=np.float64)
    ok = np.isfinite(values) & (values >= 0)
    starts, ends, values = starts[ok], ends[ok], values[ok]
    if values.size == 0:
        return None
    horizon = float(ends[-1])
    edges = np.append(starts, horizon)
    if edges[0] > t0:
        edges = np.concatenate(([t0], edges))
        values = np.concatenate((values[:1], values))
    if edges[-1] < t1:
        edges = np.append(edges, t1)
        values = np.append(values, values[-1])
    return edges, values, horizon


def plan_batch(
    view: CarbonView,
    zones_per_pod: Sequence[Sequence[str]],
    earliest_s: npt.ArrayLike,
    latest_s: npt.ArrayLike,
    duration_s: npt.ArrayLike,
    min_saving_frac: npt.ArrayLike,
    min_hold_s: float = 60.0,
) -> BatchPlan:
    """Best start per pod over the forecasts of the zones it may run in (no loop over pods).

    Candidate starts are limited to runs the forecast fully covers (re-planned when forecasts
    refresh); the baseline is the best zone now. A pod is held when its best plan starts later
    than ``min_hold_s`` from now and saves at least ``min_saving``.
    """
    earliest = np.asarray(earliest_s, dtype=np.float64)
    latest = np.asarray(latest_s, dtype=np.float64)
    duration = np.asarray(duration_s, dtype=np.float64)
    min_saving = np.asarray(min_saving_frac, dtype=np.float64)
    n = len(zones_per_pod)
    zones = sorted({z for zs in zones_per_pod for z in zs})
    col = {z: j for j, z in enumerate(zones)}
    member = np.zeros((n, len(zones)), dtype=bool)
    for i, zs in enumerate(zones_per_pod):
        member[i, [col[z] for z in zs]] = True
    start = np.full((n, len(zones)), np.inf)
    at = np.full((n, len(zones)), np.inf)
    now_mean = np.full((n, len(zones)), np.inf)
    t0 = float(earliest.min()) if n else 0.0
    t1 = float((latest + duration).max()) + 1.0 if n else 0.0
    for j, zone in enumerate(zones):
        rows = np.flatnonzero(member[:, j])
        series = view.forecast(zone)
        prof = forecast_profile(series, t0, t1) if series is not None else None
        if prof is None or rows.size == 0:
            continue
        edges, values, horizon = prof
        e, d = earliest[rows], duration[rows]
        lat = np.maximum(np.minimum(latest[rows], horizon - d), e)
        plan = plan_starts(edges, values, e, lat, d, min_saving=0.0)
        start[rows, j] = plan.start
        at[rows, j] = plan.mean_at_start
        now_mean[rows, j] = plan.mean_now
    best = np.argmin(at, axis=1) if zones else np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    if zones:
        best_at = at[rows, best]
        best_start = start[rows, best]
        best_now = now_mean.min(axis=1)
    else:
        best_at = best_start = best_now = np.full(n, np.inf)
    found = np.isfinite(best_at)
    zone_idx = np.where(found, best, -1).astype(np.int64)
    safe_now = np.where(found & (best_now > 0), best_now, 1.0)
    saving = np.where(found & (best_now > 0), 1.0 - best_at / safe_now, 0.0)
    hold = found & (saving >= np.maximum(min_saving, 1e-9)) & (best_start > earliest + min_hold_s)
    return BatchPlan(
        start=np.where(hold, best_start, earliest),
        mean_at=np.where(found, np.where(hold, best_at, best_now), np.nan),
        mean_now=np.where(found, best_now, np.nan),
        zone=zone_idx,
        hold=hold,
        zones=zones,
    )
