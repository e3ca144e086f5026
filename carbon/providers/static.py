"""``static`` provider: fixed per-zone values from the policy, else the built-in annual means.

The built-in table (``carbon/data/zone_annual_means.csv``) holds 2022 annual mean lifecycle
intensities for 123 Electricity Maps zones (Sukprasert et al., EuroSys'24 artifact), plus country
keys and aliases derived from them, each row citing its source. This is the embedded offline
default and the last link of every fallback chain; no I/O after construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from carbon.clock import wall
from carbon.config import ProviderConfig
from carbon.providers.base import ProviderError, gather_zones, provider, utc
from carbon.types import IntensityPoint
from carbon.zones import builtin_annual_means


def static_values(config: ProviderConfig) -> dict[str, float]:
    """Zone -> g/kWh: built-in table (unless ``options.builtin`` is false) + ``options.values``."""
    values: dict[str, float] = {}
    if config.options.get("builtin", True):
        values.update(builtin_annual_means())
    raw: Any = config.options.get("values") or {}
    for zone, value in dict(raw).items():
        g = float(value)
        if not math.isfinite(g) or not 0 <= g <= 2000:
            raise ValueError(f"static value for {zone!r} must be 0..2000 gCO2e/kWh, got {value!r}")
        values[str(zone)] = g
    return values


@provider("static")
class StaticProvider:
    """Constant values per zone (never stale, always marked estimated)."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.values = static_values(config)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _point(self, zone: str, start: datetime, end: datetime) -> IntensityPoint:
        value = self.values.get(zone)
        if value is None:
            raise ProviderError(
                "unknown_zone",
                f"no static value for zone {zone!r}; add it under carbon.static in the policy",
                provider=self.name,
                zone=zone,
            )
        return IntensityPoint(zone, start, end, value, self.config.signal, "lifecycle", True)

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """One point per known zone, valid from now for an hour."""
        now = utc(self.clock())

        async def one(zone: str) -> IntensityPoint:
            return self._point(zone, now, now + timedelta(hours=1))

        return await gather_zones(self.name, zones, one)

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The constant value over the whole window."""
        return [self._point(zone, start, end)]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The constant value over the whole window."""
        return [self._point(zone, start, end)]
