"""Named reasons for carbon data that is missing, or is not the signal a class asked for.

One wording for the decision notes (annotation, ledger, ``explain``) and ``lowcarb carbon show``:

* ``unknown_zone``: no source of the fallback chain has a value for the zone (no live value and
  no static row). Nodes there are scored neutral by the carbon term.
* ``no_zone``: the node has no grid zone (its region label is missing or maps to nothing).
* ``average_for_marginal``: the class asks for the marginal signal, but the zone was served
  average intensity (no marginal source in the chain, or none answered for that zone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

UNKNOWN_ZONE = "unknown_zone"
NO_ZONE = "no_zone"
AVERAGE_FOR_MARGINAL = "average_for_marginal"
NEUTRAL = "carbon term scored neutral (the candidates' mean emissions: neither best nor worst)"


def unknown_zones_note(zones: Iterable[str]) -> str:
    """Decision-note part for zones no source knows."""
    keys = sorted(set(zones))
    return (
        f"{UNKNOWN_ZONE} {', '.join(keys)}: no carbon source has a value (no live value, no "
        f"static row); set carbon.static: {{{keys[0]}: <gCO2e/kWh>}} or map the region to a "
        "known zone in carbon.zones"
    )


def no_zone_note(nodes: int) -> str:
    """Decision-note part for nodes without a grid zone."""
    return (
        f"{NO_ZONE}: {nodes} node(s) with no grid zone (region label missing or not mapped; "
        "see carbon.zoneLabel / carbon.zones)"
    )


def unknown_zone_message(zone: str, chain: Sequence[str]) -> str:
    """``carbon show``'s explanation for one zone no source of ``chain`` knows."""
    return (
        f"no source in the fallback chain ({' -> '.join(chain)}) has a value for {zone!r} (no live "
        "value, "
        f"no static row); set carbon.static: {{{zone}: <gCO2e/kWh>}} in the policy or use a "
        "known zone key"
    )


def average_for_marginal_note(zones: Iterable[str], sources: Iterable[str]) -> str:
    """Decision note for a marginal-signal class that was served average intensity."""
    return (
        f"{AVERAGE_FOR_MARGINAL}: the class asks for the marginal signal but zone(s) "
        f"{', '.join(sorted(set(zones)))} got average intensity from "
        f"{', '.join(sorted(set(sources)))} (no marginal source answered); add a provider with "
        "signal: marginal (e.g. watttime) to carbon.providers and carbon.fallback"
    )
