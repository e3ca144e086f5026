"""What a carbon provider is: settings, typed options, protocol, classified errors, base class.

A provider only translates one API's answers into :class:`~carbon.types.IntensityPoint` (units
converted at the boundary, nothing else computed). It is built from :class:`ProviderSettings`
(the policy's provider entry: name, URL, credentials' env var names, timeouts, zone keys) whose
``options`` are an instance of the provider's own :class:`ProviderOptions` model. Errors are
classified into :data:`ErrorKind` so the cache can back off, open a circuit and count them.
The registry of provider types is :mod:`carbon.providers.registry`; HTTP providers build on
:mod:`carbon.providers._http`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    WithJsonSchema,
    model_validator,
)

from carbon.clock import wall
from carbon.duration import Duration
from carbon.types import FactorType, IntensityPoint, SignalKind

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


# ---------------------------------------------------------------------------------- settings


class ProviderOptions(BaseModel):
    """Base of every provider type's ``options`` model; as it is, a type that takes no options.

    A provider type declares its own subclass (precise fields, ``Literal`` enums) as its
    ``Options`` class attribute; unknown keys are rejected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class UncheckedOptions(ProviderOptions):
    """The options of a provider whose type is unknown: kept as written, never given to a
    provider (the unknown type itself is the error the policy reports)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ProviderSettings(BaseModel):
    """One configured carbon-data source: what a provider instance is built from.

    :class:`carbon.config.ProviderConfig` (the policy's entry) adds the validation of ``options``
    against the provider type's own model.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str = Field(min_length=1, description="Name used in `fallback` and reported as source.")
    type: str = Field(default="", description="Registered provider type; defaults to `name`.")
    url: str | None = Field(
        default=None, description="Base URL; else the provider's LOWCARB_*_URL env var or default."
    )
    token_env: str | None = Field(default=None, alias="tokenEnv")
    username_env: str | None = Field(default=None, alias="usernameEnv")
    password_env: str | None = Field(default=None, alias="passwordEnv")
    refresh: Duration = Field(default="5m", validate_default=True, description="Refresh interval.")
    timeout: Duration = Field(default="5s", validate_default=True, description="Per-call timeout.")
    signal: SignalKind = Field(default="average", description="average or marginal.")
    emission_factor: FactorType = Field(default="lifecycle", alias="emissionFactor")
    forecast: bool = Field(default=True, description="Also fetch forecasts (paid on some APIs).")
    forecast_horizon: Duration = Field(
        default="24h", validate_default=True, alias="forecastHorizon"
    )
    zones: dict[str, str] = Field(
        default_factory=dict,
        description="lowcarb zone key -> this provider's own key (e.g. DE: germanywestcentral).",
    )
    options: Annotated[
        SerializeAsAny[ProviderOptions],
        WithJsonSchema({"type": "object", "additionalProperties": True}),
    ] = Field(
        default_factory=ProviderOptions,
        validate_default=True,  # so a config of a known type holds that type's default options
        title="Options",
        description="Provider-specific settings (e.g. replay path, year).",
    )

    @model_validator(mode="after")
    def _default_type(self) -> ProviderSettings:
        if not self.type:
            object.__setattr__(self, "type", self.name)
        return self


OptionsT = TypeVar("OptionsT", bound=ProviderOptions)


def options_as(config: ProviderSettings, model: type[OptionsT]) -> OptionsT:
    """``config.options`` as ``model`` (a config built in code may hold the bare base options)."""
    given = config.options
    return given if isinstance(given, model) else model.model_validate(given.model_dump())


# ---------------------------------------------------------------------------------- protocol


@runtime_checkable
class Provider(Protocol):
    """What every carbon-data provider implements (all methods async, all times UTC)."""

    name: str
    config: ProviderSettings

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


class ProviderBase(abc.ABC):
    """Constructor and zone-key translation shared by the built-in providers.

    A subclass sets ``Options`` to its options model; ``self.options`` is then an instance of it
    (a config built in code with the base :class:`ProviderOptions` gets the defaults).
    """

    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    @classmethod
    def default_zone_keys(cls) -> Mapping[str, str]:
        """Built-in lowcarb zone -> provider key table (empty: keys pass through)."""
        return {}

    def __init__(
        self,
        config: ProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.options: ProviderOptions = options_as(config, self.Options)

    def key(self, zone: str) -> str:
        """This provider's own key for lowcarb zone ``zone``."""
        return self.config.zones.get(zone) or self.default_zone_keys().get(zone) or zone

    @abc.abstractmethod
    async def latest(self, zones: Sequence[str]) -> list[IntensityPoint]:
        """Most recent value per zone (see :class:`Provider`)."""

    @abc.abstractmethod
    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Forecast points overlapping [start, end) (see :class:`Provider`)."""

    @abc.abstractmethod
    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Measured points in [start, end) (see :class:`Provider`)."""

    async def aclose(self) -> None:  # noqa: B027  (optional on purpose: most hold nothing)
        """Nothing to release (providers holding a client override this)."""


# ---------------------------------------------------------------------------------- helpers


def utc(ts: float) -> datetime:
    """Epoch seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


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
