"""Electricity Maps API v3 provider (``auth-token`` header; latest, history, past-range, forecast).

Values are gCO2eq/kWh already; ``emissionFactor: direct`` asks for direct factors. Electricity
Maps answers 401 (not 429) when a plan's request limit is exhausted: a 401 whose message talks
about a limit or quota is classified as ``rate_limited`` so the cache backs off instead of
treating it as a bad key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from carbon.providers._http import HttpProvider, iso, number, parse_time, secret
from carbon.providers.base import ErrorKind, ProviderError, gather_zones, utc
from carbon.types import IntensityPoint

DEFAULT_URL = "https://api.electricitymap.org"
URL_ENV = "LOWCARB_ELECTRICITYMAPS_URL"
TOKEN_ENV = "LOWCARB_ELECTRICITYMAPS_TOKEN"
HOUR = timedelta(hours=1)
_LIMIT_WORDS = ("limit", "quota", "exceeded", "too many")
_PAST_RANGE_MAX = timedelta(days=10)


class ElectricityMaps(HttpProvider):
    """Electricity Maps v3 (https://static.electricitymap.org/api/docs/)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = DEFAULT_URL

    def headers(self) -> dict[str, str]:
        """``auth-token`` from the variable named by ``tokenEnv`` (default TOKEN_ENV)."""
        token = secret(self.config.token_env, TOKEN_ENV)
        return {"auth-token": token} if token else {}

    def classify(self, response: httpx.Response, message: str) -> ErrorKind | None:
        """A 401 about a limit or quota is a rate limit; a 400/404 about the zone, unknown_zone."""
        if response.status_code == 401 and any(w in message.lower() for w in _LIMIT_WORDS):
            return "rate_limited"
        if response.status_code in (400, 404) and "zone" in message.lower():
            return "unknown_zone"
        return None

    def _params(self, zone: str, **extra: str) -> dict[str, str]:
        params = {"zone": self.key(zone), **extra}
        if self.config.emission_factor == "direct":
            params["emissionFactorType"] = "direct"
        return params

    def _point(self, zone: str, item: Any, *, step: timedelta = HOUR) -> IntensityPoint:
        if not isinstance(item, dict):
            raise ProviderError(
                "bad_response", f"expected an object, got {item!r}", provider=self.name, zone=zone
            )
        value = item.get("carbonIntensity")
        if value is None:
            raise ProviderError("empty", "carbonIntensity is null", provider=self.name, zone=zone)
        start = parse_time(item.get("datetime"), provider=self.name, field="datetime")
        factor = item.get("emissionFactorType") or self.config.emission_factor
        return IntensityPoint(
            zone=zone,
            start=start,
            end=start + step,
            g_per_kwh=number(value, provider=self.name, field="carbonIntensity", zone=zone),
            kind="average",
            factor="direct" if factor == "direct" else "lifecycle",
            estimated=bool(item.get("isEstimated", False)),
        )

    async def _latest_one(self, zone: str) -> IntensityPoint:
        body = await self.http.get_json(
            "/v3/carbon-intensity/latest", params=self._params(zone), zone=zone
        )
        return self._point(zone, body)

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """``GET /v3/carbon-intensity/latest?zone=`` for each zone, concurrently."""
        return await gather_zones(self.name, zones, self._latest_one)

    def _series(self, zone: str, body: Any, key: str) -> list[IntensityPoint]:
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ProviderError(
                "bad_response", f"missing '{key}' list", provider=self.name, zone=zone
            )
        points = [
            self._point(zone, it)
            for it in items
            if isinstance(it, dict) and it.get("carbonIntensity") is not None
        ]
        if key == "forecast":
            points = [
                IntensityPoint(p.zone, p.start, p.end, p.g_per_kwh, p.kind, p.factor, True)
                for p in points
            ]
        return points

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``GET /v3/carbon-intensity/forecast?zone=`` clipped to [start, end)."""
        body = await self.http.get_json(
            "/v3/carbon-intensity/forecast", params=self._params(zone), zone=zone
        )
        return [p for p in self._series(zone, body, "forecast") if p.end > start and p.start < end]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Last 24 h via ``/history``; older windows via ``/past-range`` in 10-day chunks."""
        now = utc(self.clock())
        if start >= now - timedelta(hours=24):
            body = await self.http.get_json(
                "/v3/carbon-intensity/history", params=self._params(zone), zone=zone
            )
            points = self._series(zone, body, "history")
        else:
            points = []
            cursor = start
            while cursor < end:
                stop = min(end, cursor + _PAST_RANGE_MAX)
                body = await self.http.get_json(
                    "/v3/carbon-intensity/past-range",
                    params=self._params(zone, start=iso(cursor), end=iso(stop)),
                    zone=zone,
                )
                points.extend(self._series(zone, body, "data"))
                cursor = stop
        return [p for p in points if p.end > start and p.start < end]
