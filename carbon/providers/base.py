"""Provider protocol, registry and the shared HTTP helper every HTTP provider uses.

A provider only translates one API's answers into :class:`~carbon.types.IntensityPoint` (units
converted at the boundary, nothing else computed). Providers register by name with
``@provider("name")``; third parties expose a class under the ``lowcarb.carbon_providers``
entry-point group. Errors are classified into :data:`ErrorKind` so the cache can back off,
open a circuit and count them.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.metadata
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import httpx

from carbon.clock import wall
from carbon.config import ProviderConfig
from carbon.types import IntensityPoint

log = logging.getLogger("lowcarb.carbon.providers")

ENTRY_POINT_GROUP = "lowcarb.carbon_providers"

ErrorKind = Literal[
    "timeout",
    "network",
    "server",
    "rate_limited",
    "auth",
    "client",
    "bad_response",
    "unknown_zone",
    "invalid_value",
    "empty",
]


class ProviderError(Exception):
    """A classified failure of one provider call."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str = "",
        zone: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.provider = provider
        self.zone = zone
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" zone={self.zone}" if self.zone else ""
        status = f" status={self.status}" if self.status else ""
        return f"{self.provider or 'provider'} {self.kind}{status}{where}: {self.args[0]}"


class PartialFailure(ProviderError):
    """Some zones answered, some failed: ``points`` holds the good ones, ``errors`` the rest."""

    def __init__(
        self, points: list[IntensityPoint], errors: Mapping[str, ProviderError], provider: str
    ) -> None:
        first = next(iter(errors.values()))
        super().__init__(
            first.kind,
            f"{len(errors)} zone(s) failed",
            provider=provider,
            status=first.status,
            retry_after=first.retry_after,
        )
        self.points = points
        self.errors = dict(errors)


@runtime_checkable
class Provider(Protocol):
    """What every carbon-data provider implements (all methods async, all times UTC)."""

    name: str
    config: ProviderConfig

    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """Most recent value per zone (zones the provider cannot serve are omitted or raise)."""
        ...

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Forecast points overlapping [start, end); empty when the provider has none."""
        ...

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Measured (or best-estimate) points in [start, end)."""
        ...

    async def aclose(self) -> None:
        """Release network resources."""
        ...


ProviderFactory = Callable[..., Provider]
_REGISTRY: dict[str, ProviderFactory] = {}
_entry_points_loaded = False

T = TypeVar("T")


def provider(type_name: str) -> Callable[[T], T]:
    """Class decorator registering a provider type under ``type_name``."""

    def register(cls: T) -> T:
        _REGISTRY[type_name] = cls  # type: ignore[assignment]
        return cls

    return register


def _load_builtin() -> None:
    # Importing the package imports every built-in provider module (each registers itself).
    import carbon.providers  # noqa: F401


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            _REGISTRY[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not take the scheduler down
            log.error("carbon provider plugin %s failed to load: %s", ep.value, exc)


def registry() -> dict[str, ProviderFactory]:
    """All known provider types (built-in first, then entry points)."""
    _load_builtin()
    _load_entry_points()
    return dict(_REGISTRY)


def known_types() -> set[str]:
    """Names of all provider types."""
    return set(registry())


def create_provider(
    config: ProviderConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = wall,
) -> Provider:
    """Instantiate the provider type ``config.type`` for ``config``."""
    factory = registry().get(config.type)
    if factory is None:
        raise KeyError(f"unknown carbon provider type {config.type!r}")
    return factory(config, transport=transport, clock=clock)


# ---------------------------------------------------------------- helpers shared by providers


def utc(ts: float) -> datetime:
    """Epoch seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


def parse_time(value: Any, *, provider: str, field: str) -> datetime:
    """ISO-8601 timestamp from an API ("Z", "+00:00", no seconds, milliseconds) -> aware UTC."""
    if not isinstance(value, str):
        raise ProviderError(
            "bad_response", f"{field} is not a timestamp: {value!r}", provider=provider
        )
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ProviderError(
            "bad_response", f"{field} is not ISO-8601: {value!r}", provider=provider
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def number(value: Any, *, provider: str, field: str, zone: str | None = None) -> float:
    """A numeric field from an API, or a bad_response error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(
            "bad_response", f"{field} is not a number: {value!r}", provider=provider, zone=zone
        )
    return float(value)


def iso(dt: datetime) -> str:
    """UTC timestamp as the APIs expect it: ``2023-06-14T12:00:00Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def env_or(config_value: str | None, env_name: str, default: str) -> str:
    """Config value, else environment variable, else default (base URLs)."""
    if config_value:
        return config_value
    return os.environ.get(env_name) or default


def secret(env_name: str | None, default_env: str) -> str | None:
    """A credential read from the environment variable named in config (or the default name)."""
    value = os.environ.get(env_name or default_env)
    return value or None


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or body)[:300]
        parts = [str(body[k]) for k in ("error", "message", "msg", "title", "detail") if k in body]
        if parts:
            return ": ".join(parts)[:300]
    return str(body)[:300]


class HttpClient:
    """httpx.AsyncClient wrapper: base URL, timeout, headers, and error classification."""

    def __init__(
        self,
        provider_name: str,
        base_url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
        classify: Callable[[httpx.Response, str], ErrorKind | None] | None = None,
    ) -> None:
        self.provider = provider_name
        self.clock = clock
        self._classify = classify
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self.client.aclose()

    async def get_json(
        self,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        zone: str | None = None,
        auth: httpx.Auth | None = None,
    ) -> Any:
        """GET ``path`` and decode JSON; None for 204; raises a classified ProviderError."""
        try:
            if auth is not None:
                response = await self.client.get(path, params=params, headers=headers, auth=auth)
            else:
                response = await self.client.get(path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "timeout",
                f"no answer from {path}: {type(exc).__name__}",
                provider=self.provider,
                zone=zone,
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                "network", f"{path}: {type(exc).__name__}: {exc}", provider=self.provider, zone=zone
            ) from None
        return self.decode(response, path, zone=zone)

    def decode(self, response: httpx.Response, path: str, *, zone: str | None = None) -> Any:
        """Classify the status and return the decoded JSON body."""
        status = response.status_code
        if status == 204:
            return None
        if status >= 400:
            msg = _message(response)
            kind: ErrorKind | None = self._classify(response, msg) if self._classify else None
            retry = _retry_after(response.headers.get("Retry-After"), self.clock())
            if kind is None:
                if status == 429:
                    kind = "rate_limited"
                elif status in (401, 403):
                    kind = "auth"
                elif status >= 500:
                    kind = "server"
                elif status == 404 and zone is not None:
                    kind = "unknown_zone"
                else:
                    kind = "client"
            raise ProviderError(
                kind,
                f"{path}: {msg}",
                provider=self.provider,
                zone=zone,
                status=status,
                retry_after=retry,
            )
        try:
            return response.json()
        except ValueError:
            ctype = response.headers.get("content-type", "?")
            raise ProviderError(
                "bad_response",
                f"{path}: body is not JSON (content-type {ctype}): {response.text[:80]!r}",
                provider=self.provider,
                zone=zone,
                status=status,
            ) from None


_SEVERITY: dict[str, int] = {
    "rate_limited": 0,
    "auth": 1,
    "timeout": 2,
    "network": 3,
    "server": 4,
    "bad_response": 5,
    "client": 6,
    "invalid_value": 7,
    "empty": 8,
    "unknown_zone": 9,
}


async def gather_zones(
    provider_name: str,
    zones: Sequence[str],
    fetch: Callable[[str], Awaitable[IntensityPoint | None]],
) -> list[IntensityPoint]:
    """Fetch one point per zone concurrently; raise when any zone failed.

    All failed -> the most actionable error (rate limit before auth before timeout ...);
    some failed -> :class:`PartialFailure` carrying the good points.
    """
    results = await asyncio.gather(*(fetch(z) for z in zones), return_exceptions=True)
    points: list[IntensityPoint] = []
    errors: dict[str, ProviderError] = {}
    for zone, res in zip(zones, results, strict=True):
        if isinstance(res, ProviderError):
            res.zone = res.zone or zone
            errors[zone] = res
        elif isinstance(res, BaseException):
            if isinstance(res, asyncio.CancelledError):
                raise res
            errors[zone] = ProviderError(
                "bad_response", f"{type(res).__name__}: {res}", provider=provider_name, zone=zone
            )
        elif res is not None:
            points.append(res)
        else:
            errors[zone] = ProviderError(
                "empty", "no data for zone", provider=provider_name, zone=zone
            )
    if errors and not points:
        raise min(errors.values(), key=lambda e: _SEVERITY.get(e.kind, 99))
    if errors:
        raise PartialFailure(points, errors, provider_name)
    return points


class HttpProviderBase:
    """Common constructor bits for HTTP providers (config, clock, zone key translation)."""

    type_name: ClassVar[str] = ""

    @classmethod
    def default_zone_keys(cls) -> Mapping[str, str]:
        """Built-in lowcarb zone -> provider key table (empty: keys pass through)."""
        return {}

    def __init__(self, config: ProviderConfig, *, clock: Callable[[], float] = wall) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock

    def key(self, zone: str) -> str:
        """This provider's own key for lowcarb zone ``zone``."""
        return self.config.zones.get(zone) or self.default_zone_keys().get(zone) or zone
