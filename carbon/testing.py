"""Test doubles for code that reads carbon data: a fixed :class:`~carbon.types.CarbonView`.

:class:`FixedView` answers from plain values (zone -> gCO2e/kWh) and optional forecast series
(zone -> values per ``step_s`` from ``start_s``), the way the cache's snapshot does: a window
mean is time-weighted over the forecast, gaps counted at the latest value. Tests and benchmarks
of scoring, terms, gates and the simulator use it instead of a cache; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from carbon.types import Reading, SignalKind, ZoneSeries
from carbon.window import IntervalSeries

HOUR = 3600.0


class FixedView:
    """A carbon view with a fixed latest value per zone and, optionally, a forecast per zone.

    ``FixedView()`` knows no zone (every reading is None); ``FixedView({"DE": 380.0})`` knows
    one, with no forecast. :meth:`of_forecasts` builds one from forecasts alone (latest = each
    series' first value).
    """

    def __init__(
        self,
        values: Mapping[str, float] | None = None,
        forecasts: Mapping[str, Sequence[float]] | None = None,
        *,
        start_s: float = 0.0,
        step_s: float = HOUR,
        source: str = "test",
        age_s: float = 0.0,
    ) -> None:
        self.values = dict(values or {})
        self.source = source
        self.age_s = age_s
        self._series: dict[str, ZoneSeries] = {}
        self._intervals: dict[str, IntervalSeries] = {}
        for zone, series in (forecasts or {}).items():
            if not series:
                continue
            n = len(series)
            starts = tuple(start_s + i * step_s for i in range(n))
            ends = tuple(start_s + (i + 1) * step_s for i in range(n))
            vals = tuple(float(v) for v in series)
            self._series[zone] = ZoneSeries(zone, starts, ends, vals, source)
            self._intervals[zone] = IntervalSeries(starts, ends, vals)

    @classmethod
    def of_forecasts(
        cls,
        forecasts: Mapping[str, Sequence[float]],
        *,
        start_s: float,
        step_s: float = HOUR,
        source: str = "test",
    ) -> FixedView:
        """A view whose latest value per zone is the first value of its forecast."""
        latest = {zone: float(series[0]) for zone, series in forecasts.items() if series}
        return cls(latest, forecasts, start_s=start_s, step_s=step_s, source=source)

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        """The fixed value of ``zone``, or None when the view does not know it."""
        g = self.values.get(zone)
        if g is None:
            return None
        return Reading(zone=zone, g_per_kwh=g, source=self.source, age_s=self.age_s)

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        """Time-weighted forecast mean over [start_s, end_s); uncovered time at the latest value."""
        latest = self.reading(zone, kind)
        intervals = self._intervals.get(zone)
        if latest is None or intervals is None:
            return latest
        mean, covered = intervals.mean(start_s, end_s, latest.g_per_kwh)
        if covered == 0.0:
            return latest
        return Reading(zone, mean, self.source, self.age_s, False, latest.kind, True)

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        """The forecast series of ``zone`` (None when it has none)."""
        return self._series.get(zone)
