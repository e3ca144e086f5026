"""The ``replay`` provider: recorded hourly CSV series from the shared data dir."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbon.config import ProviderConfig
from carbon.datadir import data_dir
from carbon.providers.base import ProviderError
from carbon.providers.replay import ReplayProvider
from carbon.series import load_zone_year
from tests.support.carbon import ContractCase

NOW = datetime(2026, 6, 14, 12, 20, tzinfo=UTC)
needs_data = pytest.mark.skipif(
    data_dir() is None, reason="shared data dir absent (set LOWCARB_DATA to ../shared/data)"
)
CONTRACT = ContractCase(zone="DE", now=1.7e9, settings={"options": {"year": 2023}}, needs_data=True)


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
