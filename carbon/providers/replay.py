"""``replay`` provider: serve hourly CSV series (e.g. the data dir's Electricity Maps portal files).

Options (:class:`ReplayOptions`): ``year`` (default 2023), ``factor`` (``lca`` or ``direct``),
``root`` (portal folder; default ``$LOWCARB_DATA/carbon/electricitymaps_portal``), ``shift``
(default true: the series' same hour-of-year is served for "now", wrapping around the year, so
demos look live). With ``shift: false`` the series' own timestamps are used (simulations with a
fake clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from carbon.providers.base import ProviderBase, ProviderError, ProviderOptions, gather_zones, utc
from carbon.series import HourlySeries, SeriesError, load_zone_year
from carbon.types import IntensityPoint


class ReplayOptions(ProviderOptions):
    """Options of the ``replay`` provider."""

    year: int = Field(default=2023, ge=1970, le=2100, description="Year of the series to serve.")
    factor: Literal["lca", "direct"] = Field(
        default="lca", description="Emission factor column: lca (lifecycle) or direct."
    )
    root: Path | None = Field(
        default=None,
        description="Portal folder (default $LOWCARB_DATA/carbon/electricitymaps_portal).",
    )
    shift: bool = Field(
        default=True, description="Serve the same hour-of-year for now (false: own timestamps)."
    )


def _year_start(ts: float) -> float:
    year = datetime.fromtimestamp(ts, tz=UTC).year
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


class ReplayProvider(ProviderBase):
    """Replays recorded series as if live."""

    Options = ReplayOptions
    options: ReplayOptions

    async def _series(self, zone: str) -> HourlySeries:
        try:
            return await asyncio.to_thread(
                load_zone_year,
                zone,
                self.options.year,
                factor=self.options.factor,
                root=self.options.root,
            )
        except SeriesError as exc:
            raise ProviderError("unknown_zone", str(exc), provider=self.name, zone=zone) from None

    def _slice(self, s: HourlySeries, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """(interval start on the caller's timeline, value) for intervals overlapping the window."""
        step = s.step_s
        if self.options.shift:
            base = _year_start(start_s)
            first = int((start_s - base) // step)
            last = int(np.ceil((end_s - base) / step))
            idx = np.arange(first, max(last, first + 1))
            return [(base + k * step, float(s.values[k % s.values.size])) for k in idx.tolist()]
        lo = max(0, int(np.searchsorted(s.starts, start_s, side="right")) - 1)
        hi = int(np.searchsorted(s.starts, end_s, side="left"))
        return [
            (float(t), float(v))
            for t, v in zip(s.starts[lo:hi], s.values[lo:hi], strict=True)
            if t + step > start_s
        ]

    def _points(
        self, zone: str, s: HourlySeries, start_s: float, end_s: float, *, est: bool
    ) -> list[IntensityPoint]:
        return [
            IntensityPoint(
                zone,
                utc(t),
                utc(t + s.step_s),
                v,
                self.config.signal,
                "direct" if self.options.factor == "direct" else "lifecycle",
                est,
            )
            for t, v in self._slice(s, start_s, end_s)
        ]

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """The interval containing now, per zone."""
        now = self.clock()

        async def one(zone: str) -> IntensityPoint:
            got = self._points(zone, await self._series(zone), now, now, est=False)
            if not got:
                raise ProviderError(
                    "empty",
                    f"series does not cover now (year {self.options.year}, shift off)",
                    provider=self.name,
                    zone=zone,
                )
            return got[0]

        return await gather_zones(self.name, zones, one)

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The recorded future (a perfect forecast), marked estimated."""
        s = await self._series(zone)
        return self._points(zone, s, start.timestamp(), end.timestamp(), est=True)

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The recorded past."""
        s = await self._series(zone)
        return self._points(zone, s, start.timestamp(), end.timestamp(), est=False)
