"""Time-weighted mean of an interval series over a window, with gaps filled by a given value.

Shared by the cache snapshot and :class:`carbon.series.SeriesView`; pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def window_mean(
    starts: FloatArray,
    ends: FloatArray,
    values: FloatArray,
    start_s: float,
    end_s: float,
    fill: float,
) -> tuple[float, float]:
    """Mean over [start_s, end_s) and the fraction of the window the series covered.

    Intervals must not overlap. Uncovered time (gaps, before the first or after the last point)
    counts at ``fill``. A zero-length window returns the value of the interval containing
    ``start_s`` (or ``fill``).
    """
    if end_s <= start_s:
        if starts.size:
            i = int(np.searchsorted(starts, start_s, side="right")) - 1
            if i >= 0 and ends[i] > start_s:
                return float(values[i]), 1.0
        return fill, 0.0
    if starts.size == 0:
        return fill, 0.0
    lo = int(np.searchsorted(ends, start_s, side="right"))
    hi = int(np.searchsorted(starts, end_s, side="left"))
    if hi <= lo:
        return fill, 0.0
    s = starts[lo:hi]
    e = ends[lo:hi]
    overlap = np.clip(np.minimum(e, end_s) - np.maximum(s, start_s), 0.0, None)
    covered = float(overlap.sum())
    width = end_s - start_s
    total = float(np.dot(overlap, values[lo:hi])) + (width - covered) * fill
    return float(total / width), float(min(1.0, covered / width))
