"""Node labels -> grid zone key, plus the built-in data tables under ``carbon/data/``.

Resolution order for a node's region label value: the policy's ``carbon.zones`` overrides (which
may chain to another region name), then the built-in AWS/GCP/Azure region table, then the value
itself when it already is a known zone key. Unknown regions are logged once per mapper, not per
request; ``zone_for`` is cached per label value so the hot path is one dict lookup.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

log = logging.getLogger("lowcarb.carbon.zones")

DEFAULT_LABEL = "topology.kubernetes.io/region"


class ZoneSettings(Protocol):
    """The zone-mapping part of the ``carbon:`` policy section (what :class:`ZoneMapper` reads)."""

    @property
    def zones(self) -> Mapping[str, str]:
        """Region label value -> zone key, or another region name."""
        ...

    @property
    def zone_label(self) -> str:
        """The node label holding the region."""
        ...

    @property
    def builtin_regions(self) -> bool:
        """Whether the built-in cloud-region table is used."""
        ...


def _rows(name: str) -> Iterator[dict[str, str]]:
    text = resources.files("carbon").joinpath("data", name).read_text(encoding="utf-8")
    lines = (line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    yield from csv.DictReader(lines)


@dataclass(frozen=True, slots=True)
class CloudRegion:
    """One row of the built-in cloud-region table."""

    cloud: str
    region: str
    zone: str
    location: str


@cache
def builtin_regions() -> dict[str, CloudRegion]:
    """Cloud region name -> row (AWS, GCP and Azure names do not collide)."""
    return {
        r["region"]: CloudRegion(r["cloud"], r["region"], r["zone"], r["location"])
        for r in _rows("cloud_regions.csv")
    }


@cache
def builtin_annual_means() -> dict[str, float]:
    """Zone -> published annual mean lifecycle intensity (g/kWh) for the static provider."""
    return {r["zone"]: float(r["g_per_kwh"]) for r in _rows("zone_annual_means.csv")}


@cache
def builtin_annual_mean_sources() -> dict[str, str]:
    """Zone -> the ``source`` cell of its row (``eurosys24``, ``mean:A+B``, ``alias:Z``, ...)."""
    return {r["zone"]: r["source"] for r in _rows("zone_annual_means.csv")}


@cache
def builtin_watttime_regions() -> dict[str, str]:
    """Zone -> WattTime region where known."""
    return {r["zone"]: r["watttime_region"] for r in _rows("watttime_regions.csv")}


@cache
def builtin_azure_locations() -> dict[str, str]:
    """Zone -> first Azure region name in that zone (Carbon Aware SDK location names)."""
    out: dict[str, str] = {}
    for region in builtin_regions().values():
        if region.cloud == "azure":
            out.setdefault(region.zone, region.region)
    return out


class ZoneMapper:
    """Maps node labels to zone keys; cheap, cached, and quiet about repeats."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        label: str = DEFAULT_LABEL,
        use_builtin: bool = True,
    ) -> None:
        self.label = label
        self.overrides = dict(overrides or {})
        self.use_builtin = use_builtin
        self._cache: dict[str, str | None] = {}
        self.unknown: set[str] = set()

    @classmethod
    def from_config(cls, config: ZoneSettings) -> ZoneMapper:
        """Build from the zone settings of a :class:`carbon.config.CarbonConfig`."""
        return cls(config.zones, label=config.zone_label, use_builtin=config.builtin_regions)

    def zone_for_region(self, region: str) -> str | None:
        """Zone key for one region label value (cached)."""
        try:
            return self._cache[region]
        except KeyError:
            pass
        zone = self._resolve(region)
        self._cache[region] = zone
        if zone is None and region not in self.unknown:
            self.unknown.add(region)
            log.warning(
                "carbon: no grid zone for region %r; add it under carbon.zones in the policy "
                "(reported once)",
                region,
            )
        return zone

    def zone_for(self, labels: Mapping[str, str]) -> str | None:
        """Zone key for a node's labels, or None when the label is missing or unknown."""
        region = labels.get(self.label)
        if not region:
            return None
        return self.zone_for_region(region)

    def _resolve(self, region: str) -> str | None:
        cur, hops = region, 0
        while cur in self.overrides and hops <= len(self.overrides):
            cur, hops = self.overrides[cur], hops + 1
        if hops > len(self.overrides):  # loop (config validation rejects these already)
            return None
        if self.use_builtin:
            row = builtin_regions().get(cur)
            if row is not None:
                return row.zone
        if hops > 0 or cur in builtin_annual_means():
            return cur
        return None
