"""Each zone's recent readings as a provider served them, kept for a long-run mean.

Past a forecast's horizon the snapshot judges a run window by the zone's long-run intensity (see
:meth:`carbon.snapshot.CarbonSnapshot.mean_intensity`); when no static value of the same signal
is configured for the zone, that is the mean of the distinct readings (one per interval start)
the serving provider returned over the last ``window_s`` (14 days, the simulator's trailing
window, :data:`TRAILING_S`). Bounded: one deque per zone, pruned on every add; the
refresh task adds, the snapshot build reads the means. No I/O.
"""

from __future__ import annotations

from collections import deque

# Past the forecast horizon a window is judged by the zone's mean over the previous 14 days: on
# the 2022 series of the simulator's six zones (hourly, the tuning year), the trailing mean that
# best predicts a zone's mean over the next 7 or 30 days (mean absolute error 9.8 % and 9.1 % of
# the zone's mean; a 7-day window 10.0 / 9.7 %, 30 days 10.3 / 9.3 %, the latest hour 16.3 /
# 18.1 %).
TRAILING_S = 14 * 86400.0


class RecentReadings:
    """Distinct (interval start, value) readings per zone over a trailing window; their means."""

    __slots__ = ("_seen", "_sums", "window_s")

    def __init__(self, window_s: float = TRAILING_S) -> None:
        self.window_s = float(window_s)
        self._seen: dict[str, deque[tuple[float, float]]] = {}
        self._sums: dict[str, float] = {}  # running sum of each zone's deque (means cost O(1))

    def add(self, zone: str, start_s: float, g_per_kwh: float) -> None:
        """Record a reading; a repeat of the latest interval (or an older one) only updates it."""
        seen = self._seen.setdefault(zone, deque())
        total = self._sums.get(zone, 0.0)
        if seen and start_s <= seen[-1][0]:
            if start_s == seen[-1][0]:
                self._sums[zone] = total - seen[-1][1] + g_per_kwh
                seen[-1] = (start_s, g_per_kwh)
            return
        seen.append((start_s, g_per_kwh))
        total += g_per_kwh
        while seen[0][0] <= start_s - self.window_s:
            total -= seen.popleft()[1]
        self._sums[zone] = total

    def means(self) -> dict[str, float]:
        """Mean reading per zone over the window (zones with at least one reading)."""
        return {z: self._sums[z] / len(s) for z, s in self._seen.items() if s}
