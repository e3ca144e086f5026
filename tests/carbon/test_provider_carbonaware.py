"""GSF Carbon Aware SDK WebAPI provider against fixture-shaped responses."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from carbon.config import ProviderConfig
from carbon.providers.base import PartialFailure, ProviderError
from carbon.providers.carbonaware import CarbonAwareSdk, parse_timespan
from tests.support.carbon import ContractCase, Recorder, json_response

NOW = datetime(2024, 6, 17, 0, 12, tzinfo=UTC)
CONTRACT = ContractCase(
    zone="US-MIDA-PJM",
    now=datetime(2024, 6, 17, 0, 12, tzinfo=UTC).timestamp(),
    settings={"url": "http://casdk.test"},
    routes={"/emissions/bylocations": "carbon-aware-sdk/emissions-bylocation.json"},
)


def make(rec: Recorder, **cfg: object) -> CarbonAwareSdk:
    config = ProviderConfig.model_validate(
        {"name": "carbonaware", "url": "http://casdk.test", **cfg}
    )
    return CarbonAwareSdk(config, transport=rec.transport(), clock=lambda: NOW.timestamp())


async def test_latest_batches_locations_and_takes_newest() -> None:
    rec = Recorder(
        {"/emissions/bylocations": json_response("carbon-aware-sdk/emissions-bylocations.json")}
    )
    prov = make(rec, zones={"US-MIDA-PJM": "eastus", "US-CAL-CISO": "westus"})
    points = {p.zone: p for p in await prov.latest(["US-MIDA-PJM", "US-CAL-CISO"])}
    assert points["US-MIDA-PJM"].g_per_kwh == 477.27
    assert points["US-CAL-CISO"].g_per_kwh == 426.74
    assert points["US-CAL-CISO"].start == datetime(2024, 6, 17, 0, 10, tzinfo=UTC)
    params = rec.requests[0].url.params
    assert params.get_list("location") == ["eastus", "westus"]  # repeated key, not `locations`
    assert params["toTime"] == "2024-06-17T00:12:00Z"


async def test_builtin_azure_location_for_zone() -> None:
    rec = Recorder(
        {"/emissions/bylocations": json_response("carbon-aware-sdk/emissions-bylocation.json")}
    )
    [point] = await make(rec).latest(["US-MIDA-PJM"])  # built-in: US-MIDA-PJM -> eastus
    assert point.g_per_kwh == 477.27


async def test_location_without_data_is_partial() -> None:
    rec = Recorder(
        {"/emissions/bylocations": json_response("carbon-aware-sdk/emissions-bylocation.json")}
    )
    with pytest.raises(PartialFailure) as info:
        await make(rec, zones={"A": "eastus", "B": "westus"}).latest(["A", "B"])
    assert info.value.errors["B"].kind == "empty"


async def test_204_no_content_is_empty() -> None:
    rec = Recorder({"/emissions/bylocations": httpx.Response(204)})
    with pytest.raises(ProviderError) as info:
        await make(rec, zones={"A": "eastus"}).latest(["A"])
    assert info.value.kind == "empty"


async def test_forecast_current_trims_window_durations() -> None:
    rec = Recorder(
        {
            "/emissions/forecasts/current": json_response(
                "carbon-aware-sdk/emissions-forecasts-current.json"
            )
        }
    )
    start = datetime(2024, 6, 17, tzinfo=UTC)
    end = datetime(2024, 6, 17, 0, 15, tzinfo=UTC)
    points = await make(rec, zones={"W": "westus"}).forecast("W", start, end)
    assert [p.g_per_kwh for p in points] == [424.245, 424.154, 425.062]
    assert all((p.end - p.start).total_seconds() == 300 for p in points)
    assert rec.requests[0].url.params["location"] == "westus"


async def test_history_bylocation_parses_timespan() -> None:
    rec = Recorder(
        {"/emissions/bylocation": json_response("carbon-aware-sdk/emissions-bylocation.json")}
    )
    start = datetime(2024, 6, 17, tzinfo=UTC)
    points = await make(rec, zones={"E": "eastus"}).history("E", start, NOW)
    assert [p.g_per_kwh for p in points] == [481.488, 474.73, 477.27]
    assert (points[0].end - points[0].start).total_seconds() == 300


def test_timespan_formats() -> None:
    assert parse_timespan("01:00:00", provider_name="x").total_seconds() == 3600
    assert parse_timespan("1.02:00:00", provider_name="x").total_seconds() == 26 * 3600
    assert parse_timespan(10, provider_name="x").total_seconds() == 600
    with pytest.raises(ProviderError):
        parse_timespan("soon", provider_name="x")


async def test_problem_details_400_is_client_error() -> None:
    rec = Recorder(
        {
            "/emissions/bylocations": json_response(
                "carbon-aware-sdk/error-400-argument-exception.json", 400
            )
        }
    )
    with pytest.raises(ProviderError) as info:
        await make(rec, zones={"A": "eastus"}).latest(["A"])
    assert info.value.kind == "client"
    assert "Start time must be before end time" in str(info.value)


async def test_rejected_batch_is_retried_per_location() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        locations = request.url.params.get_list("location")
        if len(locations) > 1 or locations == ["atlantis"]:
            return json_response("carbon-aware-sdk/error-400-model-validation.json", 400)
        return json_response("carbon-aware-sdk/emissions-bylocation.json")

    rec = Recorder({"/emissions/bylocations": route})
    prov = make(rec, zones={"A": "eastus", "X": "atlantis"})
    with pytest.raises(PartialFailure) as info:
        await prov.latest(["A", "X"])
    assert [(p.zone, p.g_per_kwh) for p in info.value.points] == [("A", 477.27)]
    assert info.value.errors["X"].kind == "unknown_zone"
    assert len(rec.requests) == 3  # the batch, then one request per location
