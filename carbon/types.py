"""Value types of the carbon package: an intensity point and the read-only view scoring uses.

Providers translate their API's answers into :class:`IntensityPoint`; the cache turns those into a
:class:`CarbonView`, the only carbon object the scheduling hot path ever touches (no I/O, no locks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

SignalKind = Literal["average", "marginal"]
FactorType = Literal["lifecycle", "direct"]


@dataclass(frozen=True, slots=True)
class IntensityPoint:
    """Grid carbon intensity of one zone over [start, end), in gCO2e/kWh."""

    zone: str
    start: datetime
    end: datetime
    g_per_kwh: float
    kind: SignalKind = "average"
    factor: FactorType = "lifecycle"
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """What scoring gets for one zone: a value, where it came from, and how old it is."""

    zone: str
    g_per_kwh: float
    source: str
    age_s: float
    stale: bool = False
    kind: SignalKind = "average"
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class ZoneSeries:
    """Hourly-or-finer series for one zone as parallel arrays (epoch seconds, g/kWh)."""

    zone: str
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    values: tuple[float, ...]
    source: str
    extra: dict[str, str] = field(default_factory=dict)


class CarbonView(Protocol):
    """Read-only carbon data for one scheduling cycle. Never blocks, never raises for a zone."""

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        """Latest value for ``zone`` (after fallback), or None when no source knows the zone."""
        ...

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        """Mean forecast intensity over [start_s, end_s) in epoch seconds.

        Past the forecast's end the zone's long-run value (the live snapshot: a static value of
        the signal, else the source's recent readings' mean); the latest value where no forecast
        covers the window; None when the zone is unknown to every source.
        """
        ...

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        """The forecast series held for ``zone`` (may be empty or None)."""
        ...
