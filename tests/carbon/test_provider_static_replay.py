"""The offline providers: ``static`` (policy values + built-in table) and ``replay`` (CSVs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbon.config import CarbonConfig, ProviderConfig
from carbon.datadir import data_dir
from carbon.providers.base import PartialFailure, ProviderError
from carbon.providers.replay import ReplayProvider
from carbon.providers.static import StaticProvider
from carbon.series import load_zone_year

NOW = datetime(2026, 6, 14, 12, 20, tzinfo=UTC)
needs_data = pytest.mark.skipif(
    data_dir() is None, reason="shared data dir absent (set LOWCARB_DATA to ../shared/data)"
)


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


@needs_data
async def test_replay_shifts_same_hour_of_year_to_now() -> None:
    prov = ReplayProvider(
        ProviderConfig(name="replay", options={"year": 2023}), clock=lambda: NOW.timestamp()
    )
    [point] = await prov.latest(["DE"])
    series = load_zone_year("DE", 2023)
    hour_of_year = int((NOW - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() // 3600)
    assert point.g_per_kwh == series.values[hour_of_year]
    assert point.start == datetime(2026, 6, 14, 12, tzinfo=UTC)
    fc = await prov.forecast("DE", NOW, NOW + timedelta(hours=3))
    assert [p.g_per_kwh for p in fc] == list(series.values[hour_of_year : hour_of_year + 4])
    assert all(p.estimated for p in fc)


@needs_data
async def test_replay_without_shift_uses_series_timeline() -> None:
    t = datetime(2023, 6, 14, 12, 30, tzinfo=UTC)
    prov = ReplayProvider(
        ProviderConfig(name="replay", options={"year": 2023, "shift": False}),
        clock=lambda: t.timestamp(),
    )
    [point] = await prov.latest(["DE"])
    assert point.start == datetime(2023, 6, 14, 12, tzinfo=UTC)
    assert point.g_per_kwh == 209.2  # DE-LU_2023_hourly.csv row 2023-06-14 12:00 (LCA)
    later = ReplayProvider(
        ProviderConfig(name="replay", options={"year": 2023, "shift": False}),
        clock=lambda: datetime(2025, 1, 1, tzinfo=UTC).timestamp(),
    )
    with pytest.raises(ProviderError) as info:
        await later.latest(["DE"])
    assert info.value.kind == "empty"


@needs_data
async def test_replay_unknown_zone_or_year() -> None:
    prov = ReplayProvider(ProviderConfig(name="replay", options={"year": 2023}))
    with pytest.raises(ProviderError) as info:
        await prov.latest(["XX"])
    assert info.value.kind == "unknown_zone"
    with pytest.raises(ProviderError) as info:
        await prov.latest(["FR"])  # only 2022 exists for FR
    assert info.value.kind == "unknown_zone" and "2022" in str(info.value)
