"""Load levels of a placement comparison: parse ``real,60,90`` and find the arrival compression
whose peak of allocated GPUs is about a target share of the fleet (a bisection on the time-scale
factor, started from the offered demand's peak)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scheduler.sim.trace import SimPods

SEARCH_STEPS = 8  # simulations of the reference policy per load level, at most
SEARCH_TOLERANCE = 2.0  # percentage points of the target peak allocation


def parse_load_levels(text: str) -> tuple[str, ...]:
    """``real,60,90`` -> ("real", "60", "90"); a clear error for anything else."""
    out: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.lower() == "real":
            out.append("real")
            continue
        try:
            pct = float(item.rstrip("%"))
        except ValueError:
            pct = float("nan")
        if not 0 < pct <= 100:
            raise ValueError(
                f"--load-levels: {item!r} is neither 'real' nor a peak allocated GPU percentage "
                "in (0, 100]; write e.g. real,60,90"
            )
        out.append(f"{pct:g}")
    if not out:
        raise ValueError("--load-levels: give at least one level, e.g. real,60,90")
    return tuple(dict.fromkeys(out))


def demand_peak_pct(pods: SimPods, capacity: float) -> float:
    """Peak of GPUs requested at once if every pod ran from arrival for its duration (% of
    ``capacity``): the load a scale factor offers before the fleet pushes back."""
    frac = pods.gpu_fraction
    keep = frac > 0
    if not keep.any() or capacity <= 0:
        return 0.0
    t = np.concatenate([pods.arrival[keep], pods.arrival[keep] + pods.duration[keep]])
    w = np.concatenate([frac[keep], -frac[keep]])
    order = np.lexsort((w, t))  # at equal times, departures (negative) first
    return float(100.0 * np.cumsum(w[order]).max() / capacity)


def find_load_scale(
    measure: Callable[[float], float],
    target_pct: float,
    first_guess: float,
    *,
    max_scale: float = float("inf"),
    steps: int = SEARCH_STEPS,
    tolerance: float = SEARCH_TOLERANCE,
) -> tuple[float, list[tuple[float, float]]]:
    """Time-scale factor (>= 1) whose measured peak allocation is closest to ``target_pct``.

    ``measure(scale)`` simulates and returns the peak allocated GPU %. Bisection on log(scale):
    brackets the target by doubling/halving from ``first_guess``, then halves the bracket, for at
    most ``steps`` measurements; stops once within ``tolerance`` points, or when ``max_scale``
    (every pod arriving at once) or a doubling that no longer raises the peak is still below the
    target. Returns the best scale and every
    (scale, peak %) tried.
    """
    tried: list[tuple[float, float]] = []

    def probe(scale: float) -> float:
        value = measure(scale)
        tried.append((scale, value))
        return value

    lo: float | None = None  # largest scale known to be below the target
    hi: float | None = None  # smallest scale known to be above it
    scale = min(max(first_guess, 1.0), max_scale)
    for _ in range(steps):
        value = probe(scale)
        if abs(value - target_pct) <= tolerance:
            break
        if value < target_pct:
            lo = scale if lo is None else max(lo, scale)
        else:
            hi = scale if hi is None else min(hi, scale)
        if hi is not None and hi <= 1.0:
            break  # even real arrival times load the fleet past the target
        if hi is None and lo is not None and lo >= max_scale:
            break  # every pod arrives at once and the fleet is still below the target
        if hi is None and len(tried) > 1 and value <= tried[-2][1] + 0.05:
            break  # compressing further no longer raises the peak: the fleet saturates below
        if lo is None:
            scale = max(1.0, scale / 2) if hi is not None else scale * 2
        elif hi is None:
            scale = min(lo * 2, max_scale)
        else:
            scale = float(np.sqrt(lo * hi))
    best = min(tried, key=lambda sv: abs(sv[1] - target_pct))
    return best[0], tried
