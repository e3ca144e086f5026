"""The ``carbon:`` section of the policy YAML as a validated pydantic v2 model.

``CarbonConfig()`` with no arguments is the embedded offline default: the ``static`` provider with
the built-in table of published annual lifecycle means. Every error names the field and the fix.
Durations follow :mod:`carbon.duration`; the cross-field checks are :func:`carbon_problems`, which
the model's validator calls, or the policy loader runs itself (see :mod:`carbon.checks`).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from carbon.checks import Problem, did_you_mean, raise_problems, separate
from carbon.duration import Duration
from carbon.intensity import Intensity
from carbon.providers.base import ProviderOptions, ProviderSettings, UncheckedOptions
from carbon.providers.registry import ENTRY_POINT_GROUP, known_types, options_model
from carbon.providers.static import StaticOptions

__all__ = [
    "STATIC_NAME",
    "BackoffConfig",
    "CarbonConfig",
    "CircuitConfig",
    "Intensity",
    "ProviderConfig",
    "carbon_problems",
    "load_carbon_section",
]

STATIC_NAME = "static"

_CAMEL = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ProviderConfig(ProviderSettings):
    """One configured carbon-data source (an instance of a registered provider type)."""

    @field_validator("options", mode="before")
    @classmethod
    def _typed_options(cls, value: object, info: ValidationInfo) -> object:
        """Validate ``options`` with the provider type's own model, so ``options: {factor:
        direkt}`` on a ``replay`` provider is an error at ``providers[0].options.factor``.
        Options of an unknown type are kept unchecked: the type is the error (see
        :func:`carbon_problems`)."""
        kind = info.data.get("type") or info.data.get("name")
        model = options_model(kind) if isinstance(kind, str) else None
        if model is None:
            if isinstance(value, ProviderOptions):
                return value
            return UncheckedOptions.model_validate(value) if isinstance(value, dict) else value
        if isinstance(value, model):
            return value
        if isinstance(value, ProviderOptions):
            value = value.model_dump()
        return model.model_validate(value)


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


class CarbonConfig(BaseModel):
    """Validated ``carbon:`` policy section."""

    model_config = _CAMEL

    providers: list[ProviderConfig] = Field(default_factory=list)
    fallback: list[str] = Field(
        default_factory=lambda: [STATIC_NAME],
        description="Ordered chain of provider names; must end with 'static'.",
    )
    stale_after: Duration = Field(default="2h", validate_default=True, alias="staleAfter")
    static: dict[str, Intensity] = Field(
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

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> CarbonConfig:
        if not separate(info):
            raise_problems(carbon_problems(self.model_dump(by_alias=True)), ("carbon",))
        return self

    def provider(self, name: str) -> ProviderConfig:
        """The provider config called ``name`` (the implicit ``static`` when not declared)."""
        found = next((p for p in self.providers if p.name == name), None)
        if found is None:
            if name != STATIC_NAME:
                raise KeyError(name)
            found = ProviderConfig(name=STATIC_NAME, type=STATIC_NAME, forecast=False)
        if found.type == STATIC_NAME:
            given = found.options
            own = given if isinstance(given, StaticOptions) else StaticOptions()
            options = StaticOptions(
                values={**self.static, **own.values},
                builtin=self.builtin_static if own.builtin is None else own.builtin,
            )
            found = found.model_copy(update={"options": options})
        return found

    def chain(self) -> list[ProviderConfig]:
        """Provider configs in fallback order."""
        return [self.provider(name) for name in self.fallback]


def carbon_problems(section: object) -> list[Problem]:
    """Every cross-field problem of a ``carbon:`` mapping (raw or dumped; wrong-typed values are
    skipped): duplicate or unknown providers, a fallback chain that names an undeclared provider,
    repeats one or does not end with ``static``, a zone-mapping loop. Locations are relative to
    the section."""
    if not isinstance(section, dict):
        return []
    out: list[Problem] = []
    declared: dict[str, object] = {}  # provider name -> type
    providers = section.get("providers")
    for i, prov in enumerate(providers if isinstance(providers, list) else []):
        if not isinstance(prov, dict):
            continue
        name, kind = prov.get("name"), prov.get("type") or prov.get("name")
        if isinstance(name, str) and name:
            if name in declared:
                out.append(
                    (
                        ("providers", i, "name"),
                        f"duplicate provider name {name!r}; give each provider a unique name",
                    )
                )
            else:
                declared[name] = kind
        if isinstance(kind, str) and kind and options_model(kind) is None:
            types = known_types()
            out.append(
                (
                    ("providers", i, "type" if prov.get("type") else "name"),
                    f"unknown provider type {kind!r}{did_you_mean(kind, sorted(types))} (use "
                    f"one of {', '.join(sorted(types))}, or install a plugin exposing it under "
                    f"the {ENTRY_POINT_GROUP!r} entry-point group)",
                )
            )
    fallback = section.get("fallback", [STATIC_NAME])
    if isinstance(fallback, list):
        out.extend(_chain_problems(fallback, declared))
    zones = section.get("zones")
    if isinstance(zones, dict):
        out.extend((("zones",), msg) for msg in _zone_loops(zones))
    return out


def _chain_problems(fallback: list[object], declared: dict[str, object]) -> list[Problem]:
    if not fallback:
        return [(("fallback",), "empty chain; list provider names ending in 'static'")]
    out: list[Problem] = []
    known = sorted({*declared, STATIC_NAME})
    seen: set[str] = set()
    for i, name in enumerate(fallback):
        if not isinstance(name, str):
            continue
        if name in seen:
            out.append((("fallback", i), f"{name!r} is listed twice; list each provider once"))
        elif name not in declared and name != STATIC_NAME:
            out.append(
                (
                    ("fallback", i),
                    f"{name!r} is not a provider name{did_you_mean(name, known)} (known: "
                    f"{', '.join(known)}); define it under carbon.providers",
                )
            )
        seen.add(name)
    last = fallback[-1]
    last_type = declared.get(last, last) if isinstance(last, str) else None
    if isinstance(last_type, str) and last_type != STATIC_NAME:
        out.append(
            (
                ("fallback",),
                f"the chain ends with {last!r}; add 'static' as the last entry so every zone "
                "always has a value",
            )
        )
    return out


def _zone_loops(zones: dict[object, object]) -> list[str]:
    """One message per loop in the region -> zone mapping (string entries only)."""
    links = {k: v for k, v in zones.items() if isinstance(k, str) and isinstance(v, str)}
    out: list[str] = []
    reported: set[str] = set()
    for start in links:
        seen = [start]
        cur = links[start]
        while cur in links and cur not in seen:
            seen.append(cur)
            cur = links[cur]
        if cur not in seen or cur in reported:
            continue
        loop = seen[seen.index(cur) :]
        reported.update(loop)
        path = " -> ".join([*loop, cur])
        out.append(
            f"zone mapping loop {path}; map {loop[0]!r} to a zone key that is not itself a key "
            "of carbon.zones"
        )
    return out


def load_carbon_section(data: Any) -> CarbonConfig:
    """Validate the ``carbon:`` mapping of a parsed policy document (None -> default)."""
    if data is None:
        return CarbonConfig()
    return CarbonConfig.model_validate(data)
