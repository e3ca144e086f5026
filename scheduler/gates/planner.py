"""Temporal-shift planner: the best start in [earliest, latest] for many pods at once (pure numpy).

For each pod, candidate starts are ``earliest`` and every interval boundary of the intensity
profile in (earliest, latest], plus ``latest`` (the latest safe start, i.e. deadline minus expected
duration). The chosen start minimises the mean intensity over [start, start + duration); ties go to
the earliest candidate, so a pod is never held for nothing. Means come from the cumulative
integral of the profile, so the cost is O(pods x candidates) with no Python loop over pods.
Used by the placement simulator (``--slack``); the gate controller can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Plan:
    """Per pod: chosen start, mean intensity over the run from there and from ``earliest``."""

    start: FloatArray
    mean_at_start: FloatArray
    mean_now: FloatArray

    @property
    def saving(self) -> FloatArray:
        """Expected relative saving of each plan against starting at once (0 when not held)."""
        safe = np.where(self.mean_now > 0, self.mean_now, 1.0)
        return np.asarray(np.where(self.mean_now > 0, 1 - self.mean_at_start / safe, 0.0))


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
