"""The ``static`` provider: the policy's values over the built-in table of annual means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbon.config import CarbonConfig
from carbon.providers.base import PartialFailure
from carbon.providers.static import StaticProvider
from tests.support.carbon import ContractCase

NOW = datetime(2026, 6, 14, 12, 20, tzinfo=UTC)
CONTRACT = ContractCase(zone="FR", now=1.7e9)


async def test_static_builtin_table_and_policy_override() -> None:
    config = CarbonConfig.model_validate({"static": {"DE": 380, "MY-DC": 120.5}})
    prov = StaticProvider(config.provider("static"), clock=lambda: NOW.timestamp())
    points = {p.zone: p for p in await prov.latest(["DE", "FR", "MY-DC"])}
    assert points["DE"].g_per_kwh == 380.0  # policy override wins
    assert points["FR"].g_per_kwh == 99.4  # built-in 2022 annual mean (EuroSys'24 artifact)
    assert points["MY-DC"].g_per_kwh == 120.5
    assert all(p.estimated and p.factor == "lifecycle" for p in points.values())
    [fc] = await prov.forecast("FR", NOW, NOW + timedelta(hours=24))
    assert fc.start == NOW and fc.end == NOW + timedelta(hours=24)


async def test_static_without_builtin_knows_only_policy_zones() -> None:
    config = CarbonConfig.model_validate({"static": {"DE": 380}, "builtinStatic": False})
    prov = StaticProvider(config.provider("static"))
    with pytest.raises(PartialFailure) as info:
        await prov.latest(["DE", "FR"])
    assert info.value.errors["FR"].kind == "unknown_zone"
    assert "carbon.static" in str(info.value.errors["FR"])
