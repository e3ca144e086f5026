"""NESO Carbon Intensity API provider: national and regional, latest/forecast/history."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from carbon.config import ProviderConfig
from carbon.providers.base import PartialFailure, ProviderError
from carbon.providers.ukgrid import UkGrid
from tests.support.carbon import ContractCase, Recorder, json_response

START = datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
CONTRACT = ContractCase(
    zone="GB",
    now=datetime(2023, 3, 14, 3, 40, tzinfo=UTC).timestamp(),
    routes={"/intensity": "uk-carbon-intensity/intensity.json"},
)


def make(rec: Recorder, **cfg: object) -> UkGrid:
    config = ProviderConfig.model_validate({"name": "ukgrid", **cfg})
    return UkGrid(config, transport=rec.transport(), clock=lambda: START.timestamp())


async def test_national_latest_prefers_actual() -> None:
    rec = Recorder({"/intensity": json_response("uk-carbon-intensity/intensity.json")})
    [point] = await make(rec).latest(["GB"])
    assert point.g_per_kwh == 71.0 and point.estimated is False
    assert point.start == START and (point.end - point.start).total_seconds() == 1800
    assert point.factor == "direct"
    assert rec.requests[0].url.host == "api.carbonintensity.org.uk"


async def test_regional_latest_by_regionid_is_a_forecast() -> None:
    rec = Recorder(
        {"/regional/regionid/13": json_response("uk-carbon-intensity/regional-regionid-13.json")}
    )
    [point] = await make(rec, zones={"GB-LON": "regionid:13"}).latest(["GB-LON"])
    assert point.zone == "GB-LON" and point.g_per_kwh == 178.0 and point.estimated is True


async def test_national_forecast_48h_uses_forecast_when_actual_missing() -> None:
    rec = Recorder({"/fw48h": json_response("uk-carbon-intensity/intensity-from-fw48h.json")})
    end = datetime(2023, 3, 16, 3, 30, tzinfo=UTC)
    points = await make(rec).forecast("GB", START, end)
    assert rec.paths() == ["/intensity/2023-03-14T03:30Z/fw48h"]
    assert len(points) == 96
    assert [p.g_per_kwh for p in points[:3]] == [69.0, 72.0, 69.0]
    assert all(p.estimated for p in points)


async def test_regional_postcode_forecast_accepts_object_shaped_data() -> None:
    rec = Recorder(
        {
            "/postcode/RG10": json_response(
                "uk-carbon-intensity/regional-intensity-from-fw48h-postcode-RG10.json"
            )
        }
    )
    end = datetime(2023, 3, 14, 5, 0, tzinfo=UTC)
    points = await make(rec, zones={"GB-RDG": "postcode:RG10"}).forecast("GB-RDG", START, end)
    assert rec.paths() == ["/regional/intensity/2023-03-14T03:30Z/fw48h/postcode/RG10"]
    assert [p.g_per_kwh for p in points][:2] == [178.0, 163.0]
    assert len(points) == 3


async def test_unknown_zone_makes_no_request() -> None:
    rec = Recorder({})
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["DE"])
    assert info.value.kind == "unknown_zone" and "regionid" in str(info.value)
    assert rec.requests == []


async def test_mixed_zones_partial_failure() -> None:
    rec = Recorder({"/intensity": json_response("uk-carbon-intensity/intensity.json")})
    with pytest.raises(PartialFailure) as info:
        await make(rec).latest(["GB", "FR"])
    assert [p.zone for p in info.value.points] == ["GB"]
    assert info.value.errors["FR"].kind == "unknown_zone"


async def test_500_fixture_is_server_error() -> None:
    rec = Recorder({"/intensity": json_response("uk-carbon-intensity/error-500.json", 500)})
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["GB"])
    assert info.value.kind == "server" and "Requested resource not found" in str(info.value)


async def test_history_in_14_day_chunks() -> None:
    rec = Recorder({"": json_response("uk-carbon-intensity/intensity-from-fw48h.json")})
    start = datetime(2023, 2, 20, tzinfo=UTC)
    await make(rec).history("GB", start, datetime(2023, 3, 16, tzinfo=UTC))
    assert rec.paths() == [
        "/intensity/2023-02-20T00:00Z/2023-03-06T00:00Z",
        "/intensity/2023-03-06T00:00Z/2023-03-16T00:00Z",
    ]


async def test_empty_data_is_empty_error() -> None:
    rec = Recorder({"/intensity": httpx.Response(200, json={"data": []})})
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["GB"])
    assert info.value.kind == "empty"
