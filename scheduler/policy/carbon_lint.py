"""Policy warnings about carbon data coverage: valid, but probably not what was meant.

:func:`scheduler.policy.validate.lint_text` adds these to its warnings (``lowcarb policy validate``,
errors only with ``--strict``):

* a ``carbon.zones`` entry whose zone no source of the fallback chain is known to answer for (no
  static row, not in a provider's zone table): its nodes would get no carbon data and be scored
  neutral (``unknown_zone``);
* a class asking for the ``marginal`` signal when no source of the chain provides it: it would be
  scored on average intensity (each decision then carries an ``average_for_marginal`` note).
"""

from __future__ import annotations

from carbon.checks import Loc, did_you_mean
from carbon.config import STATIC_NAME
from carbon.coverage import chain_zone_keys, mapped_zones, provider_zone_keys
from scheduler.policy.model import Policy


def carbon_warnings(policy: Policy) -> list[tuple[Loc, str]]:
    """(location in the policy, message) for each carbon-coverage warning."""
    return _unknown_zone_targets(policy) + _marginal_without_source(policy)


def _unknown_zone_targets(policy: Policy) -> list[tuple[Loc, str]]:
    carbon = policy.carbon
    known = chain_zone_keys(carbon)
    # live providers without a zone table may still answer for a key; say so, but still warn:
    # when they fail nothing else would
    live_only = [
        p.name for p in carbon.chain() if p.type != STATIC_NAME and not provider_zone_keys(p)
    ]
    out: list[tuple[Loc, str]] = []
    for region, zone in mapped_zones(carbon).items():
        if zone in known:
            continue
        close = did_you_mean(zone, sorted(known))  # ", did you mean 'DE'?" or ""
        hint = f"{close.removeprefix(', ')} " if close else ""
        maybe = (
            f"{' and '.join(live_only)} may still answer for it live, but nothing would when "
            "they fail; "
            if live_only
            else ""
        )
        out.append(
            (
                ("carbon", "zones", region),
                f"zone {zone!r} is known to no configured carbon source (no static row, not in a "
                f"provider's zone table): {maybe}nodes in region {region!r} would be scored "
                f"neutral (unknown_zone); {hint}set carbon.static: {{{zone}: <gCO2e/kWh>}} or "
                "map the region to a known zone key such as 'DE' or 'SE-SE3'",
            )
        )
    return out


def _marginal_without_source(policy: Policy) -> list[tuple[Loc, str]]:
    carbon = policy.carbon
    if any(p.signal == "marginal" for p in carbon.chain()):
        return []
    chain = " -> ".join(carbon.fallback)
    return [
        (
            ("classes", name, "signal"),
            f"class {name!r} asks for the marginal signal but no source of carbon.fallback "
            f"({chain}) has signal: marginal, so it would be scored on average intensity; add a "
            "marginal provider (e.g. watttime with signal: marginal) to carbon.providers and "
            "carbon.fallback",
        )
        for name, cls in policy.classes.items()
        if cls.signal == "marginal"
    ]
