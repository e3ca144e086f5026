"""The fleet's long-run scarcity: what a stranded GPU costs past the forecast horizon.

Scarcity, like a forecast, is known for now, not for a month: an arrival burst is over within
hours, yet a month-long pod's stranded GPUs were priced at this cycle's scarcity over its whole
run. Past the horizon the cost model prices them at the fleet's long-run scarcity instead, the way
the carbon view judges a run window past its forecast by the zone's long-run intensity: the
time-weighted mean of the scarcity ``s`` the engine saw over the trailing 14 days
(:data:`carbon.longrun.TRAILING_S`; only the time observed: before the first cycle nothing is
known, and with nothing observed yet it is this cycle's ``s``). Fed once per scored cycle with
(now, s); samples are kept per hour (bounded: 14 x 24 bins); no I/O. A clock that goes backwards
(a new simulation on the same engine) starts over. Only cycles priced with the fleet's own share
(``Context.fleet_share``) are recorded; the others read the mean without adding to it.
"""

from __future__ import annotations

from collections import deque

from carbon.longrun import TRAILING_S

_BIN_S = 3600.0


class LongRunScarcity:
    """Time-weighted trailing mean of the scarcity the engine has seen."""

    __slots__ = ("_bins", "_last", "_sum", "_time", "window_s")

    def __init__(self, window_s: float = TRAILING_S) -> None:
        self.window_s = float(window_s)
        self._bins: deque[list[float]] = deque()  # [bin start, integral of s dt, observed s]
        self._last: tuple[float, float] | None = None  # the previous (now, s)
        self._sum = 0.0  # integral of s over the bins
        self._time = 0.0  # observed seconds over the bins

    def observe(self, now_s: float, scarcity: float) -> float:
        """Record that the fleet's scarcity is ``scarcity`` from ``now_s`` on; return the long-run
        mean up to ``now_s`` (the previous scarcity held since the previous call)."""
        last = self._last
        if last is not None and now_s < last[0]:
            self._bins.clear()
            self._sum = self._time = 0.0
            last = None
        if last is not None:  # at most one window of it counts (a long idle gap is bounded)
            self._add(max(last[0], now_s - self.window_s - _BIN_S), now_s, last[1])
        self._last = (now_s, scarcity)
        lo = now_s - self.window_s
        while self._bins and self._bins[0][0] + _BIN_S <= lo:
            _, area, seen = self._bins.popleft()
            self._sum -= area
            self._time -= seen
        return self.peek(scarcity)

    def peek(self, scarcity: float) -> float:
        """The long-run mean as of the last :meth:`observe`, recording nothing: for a caller
        that does not see the whole fleet (an explain over some nodes), whose scarcity is not
        the fleet's; ``scarcity`` when nothing was observed yet."""
        if self._time <= 0.0:
            return scarcity
        return min(max(self._sum / self._time, 0.0), 1.0)

    def _add(self, start: float, end: float, s: float) -> None:
        """Spread [start, end) at scarcity ``s`` over the hourly bins."""
        t = start
        while t < end:
            b = (t // _BIN_S) * _BIN_S
            stop = min(end, b + _BIN_S)
            if not self._bins or self._bins[-1][0] != b:
                self._bins.append([b, 0.0, 0.0])
            cell = self._bins[-1]
            cell[1] += s * (stop - t)
            cell[2] += stop - t
            self._sum += s * (stop - t)
            self._time += stop - t
            t = stop
