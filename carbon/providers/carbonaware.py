"""Green Software Foundation Carbon Aware SDK WebAPI provider (v1.x).

Locations are the SDK's names (Azure region names by default). A lowcarb zone maps to a
location through this provider's ``zones`` config, else the first Azure region of the built-in
cloud-region table for that zone. Values (``rating``/``value``) are gCO2/kWh already; the signal
kind depends on the SDK's data source, so it comes from the provider's ``signal`` setting.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from carbon.providers._http import HttpProvider, iso, number, parse_time
from carbon.providers.base import PartialFailure, ProviderError, gather_zones, utc
from carbon.types import IntensityPoint
from carbon.zones import builtin_azure_locations

URL_ENV = "LOWCARB_CARBONAWARE_URL"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")


def parse_timespan(value: Any, *, provider_name: str) -> timedelta:
    """.NET TimeSpan ``[d.]hh:mm:ss`` (EmissionsData) or integer minutes (forecast DTO)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(minutes=float(value))
    match = _TIMESPAN.match(value) if isinstance(value, str) else None
    if not match:
        raise ProviderError("bad_response", f"bad duration {value!r}", provider=provider_name)
    days, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=h, minutes=m, seconds=s)


class CarbonAwareSdk(HttpProvider):
    """Carbon Aware SDK WebAPI (https://github.com/Green-Software-Foundation/carbon-aware-sdk)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = ""  # the WebAPI is self-hosted: there is no public default
    SELF_HOSTED = "your Carbon Aware SDK WebAPI, e.g. http://carbon-aware-api:8080"

    @classmethod
    def default_zone_keys(cls) -> Mapping[str, str]:
        """Built-in zone -> Azure location table."""
        return builtin_azure_locations()

    def _emissions(self, zone_of: Mapping[str, str], body: Any) -> list[IntensityPoint]:
        if body is None:  # 204 No Content
            return []
        if not isinstance(body, list):
            raise ProviderError("bad_response", "expected a list of emissions", provider=self.name)
        points = []
        for item in body:
            if not isinstance(item, dict):
                raise ProviderError("bad_response", f"bad item {item!r}", provider=self.name)
            zone = zone_of.get(str(item.get("location")))
            if zone is None:
                continue
            start = parse_time(item.get("time"), provider=self.name, field="time")
            step = parse_timespan(item.get("duration"), provider_name=self.name)
            points.append(
                IntensityPoint(
                    zone=zone,
                    start=start,
                    end=start + (step or timedelta(minutes=5)),
                    g_per_kwh=number(
                        item.get("rating"), provider=self.name, field="rating", zone=zone
                    ),
                    kind=self.config.signal,
                    factor=self.config.emission_factor,
                )
            )
        return points

    async def _window(self, zone_of: Mapping[str, str]) -> Any:
        now = utc(self.clock())
        params = [("location", loc) for loc in zone_of]
        params += [("time", iso(now - timedelta(hours=1))), ("toTime", iso(now))]
        zone = next(iter(zone_of.values())) if len(zone_of) == 1 else None
        return await self.http.get_json("/emissions/bylocations", params=params, zone=zone)

    async def _latest_one(self, zone: str) -> IntensityPoint:
        zone_of = {self.key(zone): zone}
        try:
            body = await self._window(zone_of)
        except ProviderError as exc:
            if exc.kind == "client":  # the SDK answers 400 for a location it does not know
                exc.kind = "unknown_zone"
            raise
        points = self._emissions(zone_of, body)
        if not points:
            raise ProviderError("empty", "no emissions for location", provider=self.name, zone=zone)
        return max(points, key=lambda p: p.start)

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """``/emissions/bylocations`` over the last hour; newest point per location.

        One batched request; when the SDK rejects the batch (400, e.g. one unknown location),
        the zones are asked one by one so one bad location does not hide the others.
        """
        zone_of = {self.key(z): z for z in zones}
        try:
            body = await self._window(zone_of)
        except ProviderError as exc:
            if exc.kind != "client" or len(zones) < 2:
                raise
            return await gather_zones(self.name, zones, self._latest_one)
        newest: dict[str, IntensityPoint] = {}
        for p in self._emissions(zone_of, body):
            if p.zone not in newest or p.start > newest[p.zone].start:
                newest[p.zone] = p
        missing = {
            z: ProviderError("empty", "no emissions for location", provider=self.name, zone=z)
            for z in zones
            if z not in newest
        }
        if missing and not newest:
            raise next(iter(missing.values()))
        if missing:
            raise PartialFailure(list(newest.values()), missing, self.name)
        return list(newest.values())

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/emissions/forecasts/current`` ``forecastData`` for one location."""
        loc = self.key(zone)
        params = {"location": loc, "dataStartAt": iso(start), "dataEndAt": iso(end)}
        body = await self.http.get_json("/emissions/forecasts/current", params=params, zone=zone)
        if body is None:
            return []
        if not isinstance(body, list):
            raise ProviderError(
                "bad_response", "expected a list of forecasts", provider=self.name, zone=zone
            )
        points = []
        for fc in body:
            data = fc.get("forecastData") if isinstance(fc, dict) else None
            if not isinstance(data, list):
                raise ProviderError(
                    "bad_response", "forecast has no forecastData", provider=self.name, zone=zone
                )
            for item in data:
                if not isinstance(item, dict) or item.get("location", loc) != loc:
                    continue
                t0 = parse_time(item.get("timestamp"), provider=self.name, field="timestamp")
                step = parse_timespan(item.get("duration", 5), provider_name=self.name)
                points.append(
                    IntensityPoint(
                        zone=zone,
                        start=t0,
                        end=t0 + step,
                        g_per_kwh=number(
                            item.get("value"), provider=self.name, field="value", zone=zone
                        ),
                        kind=self.config.signal,
                        factor=self.config.emission_factor,
                        estimated=True,
                    )
                )
        # durations are window sizes, not spacing: trim each point to the next one's start
        points.sort(key=lambda p: p.start)
        trimmed = [
            replace(p, end=min(p.end, nxt.start)) if nxt.start > p.start else p
            for p, nxt in itertools.pairwise(points)
        ] + points[-1:]
        return [p for p in trimmed if p.end > start and p.start < end]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/emissions/bylocation`` for one location over [start, end)."""
        loc = self.key(zone)
        params = {"location": loc, "time": iso(start), "toTime": iso(end)}
        body = await self.http.get_json("/emissions/bylocation", params=params, zone=zone)
        return [p for p in self._emissions({loc: zone}, body) if p.end > start and p.start < end]
