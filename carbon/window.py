"""Time-weighted means of an interval series over a window, gaps filled with a given value.

:class:`IntervalSeries` precomputes running integrals so a window mean costs two binary searches
(pure Python, a few microseconds): the scoring hot path asks for one mean per (zone, duration).
Shared by the cache snapshot and :class:`carbon.series.SeriesView`; no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class IntervalSeries:
    """Sorted, non-overlapping intervals [start, end) with one value each (epoch seconds)."""

    __slots__ = ("_cum_time", "_cum_value", "ends", "starts", "values")

    def __init__(
        self, starts: Iterable[float], ends: Iterable[float], values: Iterable[float]
    ) -> None:
        self.starts = [float(s) for s in starts]
        self.ends = [float(e) for e in ends]
        self.values = [float(v) for v in values]
        cum_v, cum_t = [0.0], [0.0]
        for s, e, v in zip(self.starts, self.ends, self.values, strict=True):
            cum_v.append(cum_v[-1] + (e - s) * v)
            cum_t.append(cum_t[-1] + (e - s))
        self._cum_value = cum_v
        self._cum_time = cum_t

    def __len__(self) -> int:
        return len(self.starts)

    def _integral(self, t: float) -> tuple[float, float]:
        """(integral of value dt, covered time) from the first start up to ``t``."""
        i = bisect_right(self.starts, t) - 1
        if i < 0:
            return 0.0, 0.0
        part = min(t, self.ends[i]) - self.starts[i]
        return (
            self._cum_value[i] + part * self.values[i],
            self._cum_time[i] + part,
        )

    def value_at(self, t: float) -> float | None:
        """Value of the interval containing ``t`` (None in a gap or outside)."""
        i = bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.ends[i]:
            return self.values[i]
        return None

    def mean(
        self, start: float, end: float, fill: float, beyond: float | None = None
    ) -> tuple[float, float]:
        """Mean over [start, end) and the covered fraction; uncovered time counts at ``fill``,
        except the part after the last interval's end, which counts at ``beyond`` when given
        (past a forecast's horizon: the zone's long-run mean rather than the latest reading).

        A zero-length window returns the value at ``start`` (or ``fill``).
        """
        if end <= start:
            v = self.value_at(start)
            return (v, 1.0) if v is not None else (fill, 0.0)
        v1, t1 = self._integral(end)
        v0, t0 = self._integral(start)
        covered = t1 - t0
        width = end - start
        tail = 0.0
        if beyond is not None and self.ends:
            tail = max(0.0, end - max(start, self.ends[-1]))
        gaps = width - covered - tail
        total = v1 - v0 + gaps * fill + (tail * beyond if beyond is not None else 0.0)
        return total / width, min(1.0, covered / width)


def window_mean(
    starts: FloatArray,
    ends: FloatArray,
    values: FloatArray,
    start_s: float,
    end_s: float,
    fill: float,
) -> tuple[float, float]:
    """One-off :meth:`IntervalSeries.mean` over arrays (builds the series each call)."""
    return IntervalSeries(starts.tolist(), ends.tolist(), values.tolist()).mean(
        start_s, end_s, fill
    )
