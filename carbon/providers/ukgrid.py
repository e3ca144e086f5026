"""NESO Carbon Intensity API provider for Great Britain (national and regional, no key).

Zone ``GB`` is the national series. Other zones map through the provider's ``zones`` config to
``regionid:<1..17>`` or ``postcode:<outward code>`` (e.g. ``GB-LON: regionid:13``). National
values prefer ``actual`` over ``forecast``; regional values are forecasts only (marked estimated).
Factors are direct (wind, solar and nuclear count as 0, see ``/intensity/factors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon.providers._http import HttpProvider, number, parse_time
from carbon.providers.base import PartialFailure, ProviderError
from carbon.types import IntensityPoint

DEFAULT_URL = "https://api.carbonintensity.org.uk"
URL_ENV = "LOWCARB_UKGRID_URL"
NATIONAL = "national"
_HISTORY_MAX = timedelta(days=14)


def _minute(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


class UkGrid(HttpProvider):
    """api.carbonintensity.org.uk (https://carbon-intensity.github.io/api-definitions/)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = DEFAULT_URL

    @classmethod
    def default_zone_keys(cls) -> Mapping[str, str]:
        """Only ``GB`` (national) is known without configuration."""
        return {"GB": NATIONAL}

    def _target(self, zone: str) -> tuple[str, str]:
        """('national', '') or ('regionid'|'postcode', value); unknown_zone otherwise."""
        key = self.key(zone)
        if key == NATIONAL:
            return NATIONAL, ""
        kind, _, value = key.partition(":")
        if kind in ("regionid", "postcode") and value:
            return kind, value
        raise ProviderError(
            "unknown_zone",
            f"zone {zone!r} is not GB; map it under this provider's zones to "
            "'regionid:<1-17>' or 'postcode:<outward code>'",
            provider=self.name,
            zone=zone,
        )

    def _point(self, zone: str, item: Any, *, regional: bool) -> IntensityPoint | None:
        if not isinstance(item, dict):
            raise ProviderError("bad_response", f"bad item {item!r}", provider=self.name, zone=zone)
        intensity = item.get("intensity")
        if not isinstance(intensity, dict):
            raise ProviderError(
                "bad_response", "item has no 'intensity'", provider=self.name, zone=zone
            )
        actual = None if regional else intensity.get("actual")
        value = actual if actual is not None else intensity.get("forecast")
        if value is None:
            return None
        return IntensityPoint(
            zone=zone,
            start=parse_time(item.get("from"), provider=self.name, field="from"),
            end=parse_time(item.get("to"), provider=self.name, field="to"),
            g_per_kwh=number(value, provider=self.name, field="intensity", zone=zone),
            kind="average",
            factor="direct",
            estimated=actual is None,
        )

    def _national(self, zone: str, body: Any) -> list[IntensityPoint]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderError(
                "bad_response", "missing 'data' list", provider=self.name, zone=zone
            )
        return [p for it in data if (p := self._point(zone, it, regional=False)) is not None]

    def _regional(self, zone: str, body: Any) -> list[IntensityPoint]:
        data = body.get("data") if isinstance(body, dict) else None
        regions = [data] if isinstance(data, dict) else data  # real API: object; docs: array
        if not isinstance(regions, list):
            raise ProviderError("bad_response", "missing 'data'", provider=self.name, zone=zone)
        points: list[IntensityPoint] = []
        for region in regions:
            inner = region.get("data") if isinstance(region, dict) else None
            if not isinstance(inner, list):
                raise ProviderError(
                    "bad_response", "region has no 'data' list", provider=self.name, zone=zone
                )
            points.extend(p for it in inner if (p := self._point(zone, it, regional=True)))
        return points

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """National ``/intensity`` once, plus ``/regional/<regionid|postcode>/..`` per region."""
        points: list[IntensityPoint] = []
        errors: dict[str, ProviderError] = {}
        national_body: Any = None
        for zone in zones:
            try:
                kind, value = self._target(zone)
                if kind == NATIONAL:
                    if national_body is None:
                        national_body = await self.http.get_json("/intensity", zone=zone)
                    got = self._national(zone, national_body)
                else:
                    body = await self.http.get_json(f"/regional/{kind}/{value}", zone=zone)
                    got = self._regional(zone, body)
                if not got:
                    raise ProviderError("empty", "no data", provider=self.name, zone=zone)
                points.append(got[-1])
            except ProviderError as exc:
                exc.zone = exc.zone or zone
                errors[zone] = exc
        if errors and not points:
            raise next(iter(errors.values()))
        if errors:
            raise PartialFailure(points, errors, self.name)
        return points

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/intensity/{from}/fw48h`` (or the regional equivalent), clipped to [start, end)."""
        kind, value = self._target(zone)
        if kind == NATIONAL:
            body = await self.http.get_json(f"/intensity/{_minute(start)}/fw48h", zone=zone)
            points = self._national(zone, body)
        else:
            path = f"/regional/intensity/{_minute(start)}/fw48h/{kind}/{value}"
            points = self._regional(zone, await self.http.get_json(path, zone=zone))
        points = [
            IntensityPoint(p.zone, p.start, p.end, p.g_per_kwh, p.kind, p.factor, True)
            for p in points
        ]
        return [p for p in points if p.end > start and p.start < end]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/intensity/{from}/{to}`` in 14-day chunks (regional: forecasts only)."""
        kind, value = self._target(zone)
        points: list[IntensityPoint] = []
        cursor = start
        while cursor < end:
            stop = min(end, cursor + _HISTORY_MAX)
            span = f"{_minute(cursor)}/{_minute(stop)}"
            if kind == NATIONAL:
                points.extend(
                    self._national(zone, await self.http.get_json(f"/intensity/{span}", zone=zone))
                )
            else:
                path = f"/regional/intensity/{span}/{kind}/{value}"
                points.extend(self._regional(zone, await self.http.get_json(path, zone=zone)))
            cursor = stop
        return [p for p in points if p.end > start and p.start < end]
