"""WattTime API v3 provider: marginal operating emissions rate (``co2_moer``).

Log in with HTTP Basic at ``/login`` for a bearer token (valid 30 min), refreshed 5 min before
expiry and once more on a 401. WattTime reports lbs CO2/MWh; the only computation here is the
unit conversion to g/kWh at the boundary (x 0.45359237). Zone keys map to WattTime regions via
the provider's ``zones`` config, then the built-in cloud-region table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from carbon.clock import wall
from carbon.providers._http import HttpProvider, iso, number, parse_time, secret
from carbon.providers.base import ErrorKind, ProviderError, ProviderSettings, gather_zones
from carbon.types import IntensityPoint
from carbon.zones import builtin_watttime_regions

DEFAULT_URL = "https://api.watttime.org"
URL_ENV = "LOWCARB_WATTTIME_URL"
USERNAME_ENV = "LOWCARB_WATTTIME_USERNAME"
PASSWORD_ENV = "LOWCARB_WATTTIME_PASSWORD"
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
TOKEN_LIFETIME_S = 30 * 60.0
TOKEN_REFRESH_MARGIN_S = 5 * 60.0
_HISTORY_MAX = timedelta(days=32)
SIGNAL = "co2_moer"


class WattTime(HttpProvider):
    """WattTime v3 (https://docs.watttime.org)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = DEFAULT_URL

    def __init__(
        self,
        config: ProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
    ) -> None:
        super().__init__(config, transport=transport, clock=clock)
        self.username = secret(config.username_env, USERNAME_ENV)
        self.password = secret(config.password_env, PASSWORD_ENV)
        self._token: str | None = None
        self._token_at = 0.0
        self._login_lock = asyncio.Lock()
        self.logins = 0

    @classmethod
    def default_zone_keys(cls) -> Mapping[str, str]:
        """Built-in zone -> WattTime region table."""
        return builtin_watttime_regions()

    def classify(self, response: httpx.Response, message: str) -> ErrorKind | None:
        """A 403 about scope, or a 400/422 about the region, concerns that zone only."""
        if response.status_code == 403 and "scope" in message.lower():
            return "unknown_zone"  # region/signal not in this plan: that zone only, not the key
        if response.status_code in (400, 422) and "region" in message.lower():
            return "unknown_zone"
        return None

    async def _bearer(self, *, force: bool = False) -> str:
        async with self._login_lock:
            fresh = self.clock() - self._token_at < TOKEN_LIFETIME_S - TOKEN_REFRESH_MARGIN_S
            if self._token and fresh and not force:
                return self._token
            if not self.username or not self.password:
                raise ProviderError(
                    "auth",
                    f"no WattTime credentials: set {self.config.username_env or USERNAME_ENV} "
                    f"and {self.config.password_env or PASSWORD_ENV}",
                    provider=self.name,
                )
            body = await self.http.get_json(
                "/login", auth=httpx.BasicAuth(self.username, self.password)
            )
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise ProviderError("bad_response", "login answer has no token", provider=self.name)
            self._token, self._token_at = token, self.clock()
            self.logins += 1
            return token

    async def _get(self, path: str, params: dict[str, Any], zone: str) -> Any:
        token = await self._bearer()
        try:
            return await self.http.get_json(
                path, params=params, headers={"Authorization": f"Bearer {token}"}, zone=zone
            )
        except ProviderError as exc:
            if exc.status != 401:
                raise
        token = await self._bearer(force=True)  # token revoked or expired early: log in once more
        return await self.http.get_json(
            path, params=params, headers={"Authorization": f"Bearer {token}"}, zone=zone
        )

    def _points(self, zone: str, body: Any, *, estimated: bool) -> list[IntensityPoint]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderError(
                "bad_response", "missing 'data' list", provider=self.name, zone=zone
            )
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        units = meta.get("units", "lbs_co2_per_mwh")
        if units not in ("lbs_co2_per_mwh", None):
            raise ProviderError(
                "bad_response", f"unexpected units {units!r}", provider=self.name, zone=zone
            )
        period = timedelta(seconds=float(meta.get("data_point_period_seconds") or 300))
        points = []
        for item in data:
            if not isinstance(item, dict) or item.get("value") is None:
                continue
            start = parse_time(item.get("point_time"), provider=self.name, field="point_time")
            lbs = number(item.get("value"), provider=self.name, field="value", zone=zone)
            points.append(
                IntensityPoint(
                    zone=zone,
                    start=start,
                    end=start + period,
                    g_per_kwh=lbs * LBS_PER_MWH_TO_G_PER_KWH,
                    kind="marginal",
                    factor="direct",
                    estimated=estimated or bool(item.get("imputed_data_used", False)),
                )
            )
        return points

    def _region(self, zone: str) -> str:
        return self.key(zone)

    async def _latest_one(self, zone: str) -> IntensityPoint:
        params = {"region": self._region(zone), "signal_type": SIGNAL, "horizon_hours": 0}
        body = await self._get("/v3/forecast", params, zone)
        points = self._points(zone, body, estimated=False)
        if not points:
            raise ProviderError("empty", "forecast has no points", provider=self.name, zone=zone)
        return points[0]

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """First point of ``/v3/forecast`` (WattTime's "now" value) per zone."""
        return await gather_zones(self.name, zones, self._latest_one)

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/v3/forecast`` with a horizon covering ``end`` (max 72 h)."""
        hours = max(1, min(72, int((end - start).total_seconds() // 3600) + 1))
        params = {"region": self._region(zone), "signal_type": SIGNAL, "horizon_hours": hours}
        body = await self._get("/v3/forecast", params, zone)
        return [
            p for p in self._points(zone, body, estimated=True) if p.end > start and p.start < end
        ]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/v3/historical`` in 32-day chunks, with the imputed-data marker."""
        points: list[IntensityPoint] = []
        cursor = start
        while cursor < end:
            stop = min(end, cursor + _HISTORY_MAX)
            params = {
                "region": self._region(zone),
                "signal_type": SIGNAL,
                "start": iso(cursor),
                "end": iso(stop),
                "include_imputed_marker": "true",
            }
            body = await self._get("/v3/historical", params, zone)
            points.extend(self._points(zone, body, estimated=False))
            cursor = stop
        return [p for p in points if p.end > start and p.start < end]
