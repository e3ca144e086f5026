"""The ``carbon:`` section of the policy YAML as a validated pydantic v2 model.

``CarbonConfig()`` with no arguments is the embedded offline default: the ``static`` provider with
the built-in table of published annual lifecycle means. Every error names the field and the fix.
Durations follow :mod:`carbon.duration`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from carbon.duration import Duration
from carbon.types import FactorType, SignalKind

STATIC_NAME = "static"

ProviderType = str

_CAMEL = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ProviderConfig(BaseModel):
    """One configured carbon-data source (an instance of a registered provider type)."""

    model_config = _CAMEL

    name: str = Field(min_length=1, description="Name used in `fallback` and reported as source.")
    type: ProviderType = Field(
        default="", description="Registered provider type; defaults to `name`."
    )
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
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings (e.g. replay path, year)."
    )

    @model_validator(mode="after")
    def _default_type(self) -> ProviderConfig:
        if not self.type:
            object.__setattr__(self, "type", self.name)
        return self


class BackoffConfig(BaseModel):
    """Per-provider back-off after a failed refresh (doubles per failure up to ``max``)."""

    model_config = _CAMEL

    initial: Duration = Field(default="10s", validate_default=True)
    max: Duration = Field(default="10m", validate_default=True)


class CircuitConfig(BaseModel):
    """Open the circuit after ``failures`` consecutive failures; try again after ``openFor``."""

    model_config = _CAMEL

    failures: int = Field(default=5, ge=1)
    open_for: Duration = Field(default="5m", validate_default=True, alias="openFor")


def _check_intensity(zone: str, value: float) -> float:
    if not math.isfinite(value) or value < 0 or value > 2000:
        raise ValueError(
            f"static value for zone {zone!r} is {value}; use gCO2e/kWh between 0 and 2000"
        )
    return value


class CarbonConfig(BaseModel):
    """Validated ``carbon:`` policy section."""

    model_config = _CAMEL

    providers: list[ProviderConfig] = Field(default_factory=list)
    fallback: list[str] = Field(
        default_factory=lambda: [STATIC_NAME],
        description="Ordered chain of provider names; must end with 'static'.",
    )
    stale_after: Duration = Field(default="2h", validate_default=True, alias="staleAfter")
    static: dict[str, float] = Field(
        default_factory=dict, description="Per-zone gCO2e/kWh overriding the built-in table."
    )
    builtin_static: bool = Field(
        default=True,
        alias="builtinStatic",
        description="Use the built-in table of annual lifecycle means for zones not in `static`.",
    )
    zone_label: str = Field(default="topology.kubernetes.io/region", alias="zoneLabel")
    zones: dict[str, str] = Field(
        default_factory=dict, description="Region label value -> zone key (may chain to a region)."
    )
    builtin_regions: bool = Field(default=True, alias="builtinRegions")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @field_validator("static")
    @classmethod
    def _static_range(cls, value: dict[str, float]) -> dict[str, float]:
        for zone, g in value.items():
            _check_intensity(zone, g)
        return value

    @field_validator("zones")
    @classmethod
    def _no_loops(cls, value: dict[str, str]) -> dict[str, str]:
        for start in value:
            seen = [start]
            cur = value[start]
            while cur in value:
                if cur in seen:
                    path = " -> ".join([*seen, cur])
                    raise ValueError(
                        f"zone mapping loop {path}; map {start!r} to a zone key that is not "
                        "itself a key of carbon.zones"
                    )
                seen.append(cur)
                cur = value[cur]
        return value

    @model_validator(mode="after")
    def _check_chain(self) -> CarbonConfig:
        from carbon.providers.base import known_types

        names: dict[str, ProviderConfig] = {}
        types = known_types()
        for i, prov in enumerate(self.providers):
            if prov.name in names:
                raise ValueError(
                    f"carbon.providers[{i}].name: duplicate provider name {prov.name!r}; "
                    "give each provider a unique name"
                )
            if prov.type not in types:
                raise ValueError(
                    f"carbon.providers[{i}].type: unknown provider type {prov.type!r}; "
                    f"use one of {sorted(types)} or install a plugin exposing it under the "
                    "'lowcarb.carbon_providers' entry-point group"
                )
            names[prov.name] = prov
        if not self.fallback:
            raise ValueError("carbon.fallback: empty chain; list provider names ending in 'static'")
        for i, name in enumerate(self.fallback):
            if name not in names and name != STATIC_NAME:
                raise ValueError(
                    f"carbon.fallback[{i}]: {name!r} is not a provider name; define it under "
                    f"carbon.providers (known: {sorted([*names, STATIC_NAME])})"
                )
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError("carbon.fallback: a provider is listed twice; list each once")
        last = self.fallback[-1]
        last_type = names[last].type if last in names else STATIC_NAME
        if last_type != STATIC_NAME:
            raise ValueError(
                f"carbon.fallback: the chain ends with {last!r}; add 'static' as the last entry "
                "so every zone always has a value"
            )
        return self

    def provider(self, name: str) -> ProviderConfig:
        """The provider config called ``name`` (the implicit ``static`` when not declared)."""
        found = next((p for p in self.providers if p.name == name), None)
        if found is None:
            if name != STATIC_NAME:
                raise KeyError(name)
            found = ProviderConfig(name=STATIC_NAME, type=STATIC_NAME, forecast=False)
        if found.type == STATIC_NAME:
            values = {**self.static, **dict(found.options.get("values") or {})}
            builtin = bool(found.options.get("builtin", self.builtin_static))
            options = {**found.options, "values": values, "builtin": builtin}
            found = found.model_copy(update={"options": options})
        return found

    def chain(self) -> list[ProviderConfig]:
        """Provider configs in fallback order."""
        return [self.provider(name) for name in self.fallback]


def load_carbon_section(data: Any) -> CarbonConfig:
    """Validate the ``carbon:`` mapping of a parsed policy document (None -> default)."""
    if data is None:
        return CarbonConfig()
    return CarbonConfig.model_validate(data)
