"""ZoneMapper and the built-in tables under carbon/data/."""

from __future__ import annotations

import logging

import pytest

from carbon.config import CarbonConfig
from carbon.zones import (
    ZoneMapper,
    builtin_annual_means,
    builtin_azure_locations,
    builtin_regions,
    builtin_watttime_regions,
)

LABEL = "topology.kubernetes.io/region"


@pytest.mark.parametrize(
    ("region", "zone"),
    [
        ("eu-central-1", "DE"),
        ("us-east-1", "US-MIDA-PJM"),
        ("europe-west9", "FR"),
        ("westeurope", "NL"),
        ("eu-north-1", "SE-SE3"),
        ("australiaeast", "AU-NSW"),
    ],
)
def test_builtin_cloud_regions(region: str, zone: str) -> None:
    assert ZoneMapper().zone_for({LABEL: region}) == zone


def test_every_builtin_zone_has_a_static_value() -> None:
    means = builtin_annual_means()
    missing = {r.zone for r in builtin_regions().values()} - set(means)
    assert not missing
    clouds = {r.cloud for r in builtin_regions().values()}
    assert clouds == {"aws", "gcp", "azure"}
    assert len(means) == 132  # 123 published zones + 9 derived keys (carbon/data/README.md)


def test_secondary_tables() -> None:
    assert builtin_watttime_regions()["US-CAL-CISO"] == "CAISO_NORTH"
    assert builtin_azure_locations()["DE"] == "germanywestcentral"


def test_overrides_chain_to_builtin_and_zone_keys() -> None:
    cfg = CarbonConfig.model_validate(
        {"zones": {"lab": "my-dc", "my-dc": "eu-west-3", "edge": "DK-DK1"}, "zoneLabel": "site"}
    )
    mapper = ZoneMapper.from_config(cfg)
    assert mapper.zone_for({"site": "lab"}) == "FR"
    assert mapper.zone_for({"site": "edge"}) == "DK-DK1"
    assert mapper.zone_for({"site": "GB"}) == "GB"  # already a zone key
    assert mapper.zone_for({LABEL: "eu-west-3"}) is None  # other label ignored


def test_unknown_region_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    mapper = ZoneMapper()
    caplog.set_level(logging.WARNING, logger="lowcarb.carbon.zones")
    for _ in range(5):
        assert mapper.zone_for({LABEL: "mars-north-1"}) is None
    assert mapper.zone_for({}) is None
    hits = [r for r in caplog.records if "mars-north-1" in r.getMessage()]
    assert len(hits) == 1 and "carbon.zones" in hits[0].getMessage()
    assert mapper.unknown == {"mars-north-1"}


def test_builtin_table_can_be_disabled() -> None:
    mapper = ZoneMapper({"x": "DE"}, use_builtin=False)
    assert mapper.zone_for({LABEL: "eu-central-1"}) is None
    assert mapper.zone_for({LABEL: "x"}) == "DE"
