"""Which zone keys the carbon sources answer for without asking the network.

``lowcarb policy validate`` uses it to warn about a ``carbon.zones`` target that no source knows;
the tests use it to hold the built-in static table to every zone key lowcarb's own tables use.
A provider knows the keys of its ``zones`` config and of its type's built-in table
(``default_zone_keys``: ``GB`` for ukgrid, the WattTime and Azure-location tables); pass-through
types (electricitymaps, replay, plugins without a table) may answer for more keys live, but
nothing here can tell offline. The static provider knows its values: ``carbon.static`` plus the
built-in table unless ``builtinStatic`` is false.
"""

from __future__ import annotations

from carbon.config import STATIC_NAME, CarbonConfig, ProviderConfig
from carbon.providers.registry import registry
from carbon.providers.static import static_values
from carbon.zones import ZoneMapper, builtin_regions


def provider_zone_keys(config: ProviderConfig) -> frozenset[str]:
    """Zone keys the provider configured by ``config`` is known to answer for."""
    keys = set(config.zones)
    if config.type == STATIC_NAME:
        keys |= set(static_values(config))
    table = getattr(registry().get(config.type), "default_zone_keys", None)
    if callable(table):
        keys |= set(table())
    return frozenset(keys)


def chain_zone_keys(config: CarbonConfig) -> frozenset[str]:
    """Zone keys some source of the fallback chain is known to answer for."""
    keys: set[str] = set()
    for provider in config.chain():
        keys |= provider_zone_keys(provider)
    return frozenset(keys)


def mapped_zones(config: CarbonConfig) -> dict[str, str]:
    """Each region key of ``carbon.zones`` -> the zone key it finally resolves to."""
    mapper = ZoneMapper.from_config(config)
    out: dict[str, str] = {}
    for region in config.zones:
        zone = mapper.zone_for_region(region)
        if zone is not None:  # None only for a loop, which validation rejects
            out[region] = zone
    return out


def builtin_zone_uses() -> dict[str, frozenset[str]]:
    """Every zone key that lowcarb's built-in tables use, keyed by where it is used."""
    uses = {"cloud_regions.csv": frozenset(r.zone for r in builtin_regions().values())}
    for name, cls in sorted(registry().items()):
        table = getattr(cls, "default_zone_keys", None)
        keys = frozenset(table()) if callable(table) else frozenset()
        if keys:
            uses[f"provider {name}"] = keys
    return uses
