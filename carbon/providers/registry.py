"""The provider registry: type name -> provider class, built-ins here, plugins by entry point.

:data:`REGISTRY` is the one list of built-in types (a new provider is one line here). Third-party
types come from the ``lowcarb.carbon_providers`` entry-point group, looked up only when a name is
not built in and loaded once (a broken plugin is logged and skipped, never fatal). A provider
class is called as ``cls(settings, transport=..., clock=...)`` and declares its ``Options`` model
(a :class:`~carbon.providers.base.ProviderOptions` subclass; without one it takes no options).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from typing import Final

import httpx

from carbon.clock import wall
from carbon.providers.base import Provider, ProviderBase, ProviderOptions, ProviderSettings
from carbon.providers.carbonaware import CarbonAwareSdk
from carbon.providers.electricitymaps import ElectricityMaps
from carbon.providers.replay import ReplayProvider
from carbon.providers.static import StaticProvider
from carbon.providers.ukgrid import UkGrid
from carbon.providers.watttime import WattTime

log = logging.getLogger("lowcarb.carbon.providers")

ENTRY_POINT_GROUP: Final = "lowcarb.carbon_providers"

REGISTRY: Final[dict[str, type[ProviderBase]]] = {
    "carbonaware": CarbonAwareSdk,
    "electricitymaps": ElectricityMaps,
    "replay": ReplayProvider,
    "static": StaticProvider,
    "ukgrid": UkGrid,
    "watttime": WattTime,
}
"""Built-in provider types by name."""

ProviderClass = Callable[..., Provider]
"""A provider type: called with (settings, *, transport, clock), returns a :class:`Provider`."""

_plugins: dict[str, ProviderClass | None] = {}  # entry-point name -> loaded class (None: broken)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in found if ep.name not in REGISTRY}


def _plugin(name: str, entry: importlib.metadata.EntryPoint | None = None) -> ProviderClass | None:
    if name not in _plugins:
        entry = entry or _entry_points().get(name)
        if entry is None:
            return None
        try:
            _plugins[name] = entry.load()
        except Exception as exc:  # a broken plugin must not take the scheduler down
            log.error("carbon provider plugin %s failed to load: %s", entry.value, exc)
            _plugins[name] = None
    return _plugins[name]


def provider_class(type_name: str) -> ProviderClass | None:
    """The class of provider type ``type_name`` (built in, else a plugin), None when unknown."""
    return REGISTRY.get(type_name) or _plugin(type_name)


def registry() -> dict[str, ProviderClass]:
    """Every provider type: the built-ins, then every plugin that loads."""
    plugins = {name: _plugin(name, ep) for name, ep in _entry_points().items()}
    return {**REGISTRY, **{name: cls for name, cls in plugins.items() if cls is not None}}


def known_types() -> set[str]:
    """Names of all provider types (loads the plugins)."""
    return set(registry())


def options_model(type_name: str) -> type[ProviderOptions] | None:
    """The options model of provider type ``type_name`` (None when the type is unknown)."""
    cls = provider_class(type_name)
    if cls is None:
        return None
    model = getattr(cls, "Options", ProviderOptions)
    if isinstance(model, type) and issubclass(model, ProviderOptions):
        return model
    log.error(
        "carbon provider %s: its Options is not a ProviderOptions subclass; it takes no options",
        type_name,
    )
    return ProviderOptions


def create_provider(
    config: ProviderSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = wall,
) -> Provider:
    """Instantiate the provider type ``config.type`` for ``config``."""
    cls = provider_class(config.type)
    if cls is None:
        raise KeyError(f"unknown carbon provider type {config.type!r}")
    return cls(config, transport=transport, clock=clock)
