"""``static`` provider: fixed per-zone values from the policy, else the built-in annual means.

The built-in table (``carbon/data/zone_annual_means.csv``) holds 2022 annual mean lifecycle
intensities for 123 Electricity Maps zones (Sukprasert et al., EuroSys'24 artifact), plus country
keys and aliases derived from them, each row citing its source. This is the embedded offline
default and the last link of every fallback chain; no I/O after construction.

Options: ``values`` (zone -> gCO2e/kWh, 0..2000; the policy's ``carbon.static`` is merged in) and
``builtin`` (use the built-in table for other zones; unset: the policy's ``builtinStatic``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import httpx
from pydantic import Field

from carbon.clock import wall
from carbon.intensity import Intensity
from carbon.providers.base import (
    ProviderBase,
    ProviderError,
    ProviderOptions,
    ProviderSettings,
    gather_zones,
    options_as,
    utc,
)
from carbon.types import IntensityPoint
from carbon.zones import builtin_annual_means


class StaticOptions(ProviderOptions):
    """Options of the ``static`` provider."""

    values: dict[str, Intensity] = Field(
        default_factory=dict, description="Zone -> gCO2e/kWh, overriding the built-in table."
    )
    builtin: bool | None = Field(
        default=None,
        description="Serve the built-in annual means for other zones (unset: builtinStatic).",
    )


def static_values(config: ProviderSettings) -> dict[str, float]:
    """Zone -> g/kWh: the built-in table (unless ``options.builtin`` is false) + ``values``."""
    options = options_as(config, StaticOptions)
    values: dict[str, float] = {}
    if options.builtin is not False:
        values.update(builtin_annual_means())
    values.update(options.values)
    return values


class StaticProvider(ProviderBase):
    """Constant values per zone (never stale, always marked estimated)."""

    Options = StaticOptions

    def __init__(
        self,
        config: ProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
    ) -> None:
        super().__init__(config, transport=transport, clock=clock)
        self.values = static_values(config)

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
