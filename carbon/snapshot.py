"""The immutable carbon snapshot scoring reads: per-source latest values and forecasts.

A :class:`CarbonSnapshot` is built by :class:`carbon.cache.CarbonCache` after every refresh and
published by a reference swap: readers never touch the network, never wait on a lock and never
see an exception. Each value carries its source and age; values older than ``staleAfter`` are
skipped in favour of the next source of the fallback chain (which ends with ``static``). A run
window longer than the serving source's forecast is judged, past the forecast's end, by the zone's
long-run intensity: the static source's value (annual means) when one of the same signal is
configured for the zone, else the serving source's mean of its readings over the last 14 days
(:mod:`carbon.longrun`), else the latest value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from carbon.types import IntensityPoint, Reading, SignalKind, ZoneSeries
from carbon.window import FloatArray, IntervalSeries

log = logging.getLogger("lowcarb.carbon.cache")  # the cache's logger: one name for carbon data


@dataclass(frozen=True, slots=True)
class Latest:
    """One source's latest value for one zone."""

    g_per_kwh: float
    start_s: float
    estimated: bool
    kind: SignalKind


@dataclass(frozen=True, slots=True, eq=False)
class Forecast:
    """One source's forecast for one zone as sorted, non-overlapping interval arrays."""

    starts: FloatArray
    ends: FloatArray
    values: FloatArray
    source: str
    zone: str
    intervals: IntervalSeries = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", IntervalSeries(self.starts, self.ends, self.values))

    def series(self) -> ZoneSeries:
        """As the contract's :class:`ZoneSeries`."""
        return ZoneSeries(
            zone=self.zone,
            starts=tuple(self.starts.tolist()),
            ends=tuple(self.ends.tolist()),
            values=tuple(self.values.tolist()),
            source=self.source,
        )


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """Everything one provider contributes to a snapshot (read-only mappings)."""

    name: str
    kind: SignalKind
    static: bool
    latest: Mapping[str, Latest]
    forecasts: Mapping[str, Forecast]
    static_values: Mapping[str, float] = field(default_factory=dict)
    long_run: Mapping[str, float] = field(default_factory=dict)  # recent readings' mean per zone


class CarbonSnapshot:
    """Immutable :class:`~carbon.types.CarbonView` of the cache at one refresh."""

    def __init__(
        self,
        chain: tuple[Source, ...],
        *,
        stale_after: float,
        clock: Callable[[], float],
        on_miss: Callable[[str], None] | None = None,
    ) -> None:
        self.chain = chain
        self.stale_after = stale_after
        self.clock = clock
        self._on_miss = on_miss
        self._orders: dict[str, tuple[Source, ...]] = {
            kind: self._order(kind) for kind in ("average", "marginal")
        }
        self._statics = tuple(s for s in chain if s.static)

    def _order(self, kind: str) -> tuple[Source, ...]:
        """Sources of ``kind`` first (chain order), then static, then the other kind's."""
        live = [s for s in self.chain if not s.static]
        if not any(s.kind == kind for s in live):
            return self.chain
        statics = [s for s in self.chain if s.static]
        return (
            *[s for s in live if s.kind == kind],
            *statics,
            *[s for s in live if s.kind != kind],
        )

    def serving(self, zone: str, kind: SignalKind = "average") -> tuple[Source, Reading] | None:
        """The source that serves ``zone`` now and its reading (None if no source knows it)."""
        try:
            now = self.clock()
            order = self._orders.get(kind) or self.chain
            stale: tuple[Source, Reading] | None = None
            missed = False
            for src in order:
                if src.static:
                    g = src.static_values.get(zone)
                    if g is not None:
                        if missed and self._on_miss is not None:
                            self._on_miss(zone)
                        return src, Reading(zone, g, src.name, 0.0, False, src.kind, True)
                    continue
                entry = src.latest.get(zone)
                if entry is None:
                    missed = True
                    continue
                age = max(0.0, now - entry.start_s)
                if age <= self.stale_after:
                    return src, Reading(
                        zone, entry.g_per_kwh, src.name, age, False, entry.kind, entry.estimated
                    )
                if stale is None:
                    stale = (
                        src,
                        Reading(zone, entry.g_per_kwh, src.name, age, True, entry.kind, True),
                    )
            if missed and self._on_miss is not None:
                self._on_miss(zone)
            return stale
        except Exception:  # the request path must never see an exception
            log.exception("carbon: snapshot lookup failed for zone %r", zone)
            return None

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        """Latest value for ``zone`` after fallback, or None when no source knows it."""
        hit = self.serving(zone, kind)
        return hit[1] if hit else None

    def source_long_run(self, src: Source, zone: str, latest: Reading) -> float:
        """The zone's long-run intensity for ``src``'s signal: a static value of that signal,
        else ``src``'s mean of its recent readings, else the latest value."""
        for static in self._statics:
            if static.kind == latest.kind:
                g = static.static_values.get(zone)
                if g is not None:
                    return g
        g = src.long_run.get(zone)
        return g if g is not None else latest.g_per_kwh

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        """Forecast mean over [start_s, end_s) from the serving source, time-weighted with the
        zone's :meth:`source_long_run` intensity past the forecast's end; gaps inside it use the
        latest.
        No forecast, a stale value or a forecast that misses the window: the latest value."""
        hit = self.serving(zone, kind)
        if hit is None:
            return None
        src, latest = hit
        fc = src.forecasts.get(zone)
        if fc is None or latest.stale:
            return latest
        try:
            far = self.source_long_run(src, zone, latest) if end_s > fc.intervals.ends[-1] else None
            mean, covered = fc.intervals.mean(start_s, end_s, latest.g_per_kwh, far)
        except Exception:
            log.exception("carbon: forecast mean failed for zone %r", zone)
            return latest
        if covered == 0.0:
            return latest
        return Reading(zone, mean, src.name, latest.age_s, False, latest.kind, True)

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        """The serving source's forecast for ``zone`` (None for static or none held)."""
        hit = self.serving(zone, kind)
        if hit is None:
            return None
        fc = hit[0].forecasts.get(zone)
        return fc.series() if fc is not None else None


def forecast_from_points(
    points: Sequence[IntensityPoint], source: str, zone: str
) -> Forecast | None:
    """Sorted, non-overlapping forecast arrays from provider points (None when nothing is left).

    Overlapping or duplicate intervals keep the earlier one; empty intervals are dropped.
    """
    if not points:
        return None
    pts = sorted(points, key=lambda p: p.start)
    starts: list[float] = []
    ends: list[float] = []
    values: list[float] = []
    for p in pts:
        s, e = p.start.timestamp(), p.end.timestamp()
        if ends and s < ends[-1]:  # overlapping/duplicate: keep the earlier interval
            s = ends[-1]
        if e <= s:
            continue
        starts.append(s)
        ends.append(e)
        values.append(p.g_per_kwh)
    if not starts:
        return None
    return Forecast(
        np.asarray(starts, dtype=np.float64),
        np.asarray(ends, dtype=np.float64),
        np.asarray(values, dtype=np.float64),
        source,
        zone,
    )
