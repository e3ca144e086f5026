"""Electricity Maps v3 provider against fixture-shaped responses (httpx MockTransport)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from carbon.config import ProviderConfig
from carbon.providers.base import PartialFailure, ProviderError
from carbon.providers.electricitymaps import ElectricityMaps
from tests.support.carbon import ContractCase, Recorder, json_response

NOW = datetime(2023, 6, 15, 0, 30, tzinfo=UTC).timestamp()
CONTRACT = ContractCase(
    zone="DE",
    now=datetime(2023, 6, 15, tzinfo=UTC).timestamp(),
    routes={"/v3/carbon-intensity/latest": "electricitymaps/carbon-intensity-latest.json"},
)


def make(rec: Recorder, **cfg: object) -> ElectricityMaps:
    config = ProviderConfig.model_validate({"name": "electricitymaps", **cfg})
    return ElectricityMaps(config, transport=rec.transport(), clock=lambda: NOW)


async def test_latest_parses_fixture_and_sends_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_TOKEN", "secret-token")
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": json_response(
                "electricitymaps/carbon-intensity-latest.json"
            )
        }
    )
    prov = make(rec)
    [point] = await prov.latest(["DE"])
    assert point.zone == "DE"
    assert point.g_per_kwh == 434.0
    assert point.start == datetime(2023, 6, 14, 23, tzinfo=UTC)
    assert point.end == datetime(2023, 6, 15, 0, tzinfo=UTC)
    assert point.estimated is True
    assert point.factor == "lifecycle" and point.kind == "average"
    req = rec.requests[0]
    assert req.headers["auth-token"] == "secret-token"
    assert req.url.params["zone"] == "DE"
    assert "emissionFactorType" not in req.url.params
    assert str(req.url).startswith("https://api.electricitymap.org/v3/")
    await prov.aclose()


async def test_direct_factor_url_and_zone_alias_from_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_URL", "http://em.example.test")
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": json_response(
                "electricitymaps/carbon-intensity-latest-direct.json"
            )
        }
    )
    prov = make(rec, emissionFactor="direct", zones={"DE-LU": "DE"})
    [point] = await prov.latest(["DE-LU"])
    assert point.zone == "DE-LU" and point.g_per_kwh == 360.0 and point.factor == "direct"
    assert rec.requests[0].url.params["emissionFactorType"] == "direct"
    assert rec.requests[0].url.params["zone"] == "DE"
    assert rec.requests[0].url.host == "em.example.test"
    assert "auth-token" not in rec.requests[0].headers


async def test_forecast_is_hourly_estimated_and_clipped() -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/forecast": json_response(
                "electricitymaps/carbon-intensity-forecast.json"
            )
        }
    )
    prov = make(rec)
    start = datetime(2023, 6, 15, 2, 30, tzinfo=UTC)
    end = datetime(2023, 6, 15, 5, tzinfo=UTC)
    points = await prov.forecast("DE", start, end)
    assert [p.start.hour for p in points] == [2, 3, 4]
    assert [p.g_per_kwh for p in points] == [472.0, 470.0, 452.0]
    assert all(p.estimated for p in points)


async def test_history_recent_uses_history_endpoint() -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/history": json_response(
                "electricitymaps/carbon-intensity-history.json"
            )
        }
    )
    prov = make(rec)
    start = datetime(2023, 6, 14, 12, tzinfo=UTC)
    points = await prov.history("DE", start, datetime(2023, 6, 14, 15, tzinfo=UTC))
    assert rec.paths() == ["/v3/carbon-intensity/history"]
    assert [p.start.hour for p in points] == [12, 13, 14]
    assert points[0].g_per_kwh == 209.0  # same hour as the past.json fixture


async def test_history_old_window_uses_past_range_in_10_day_chunks() -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/past-range": json_response(
                "electricitymaps/carbon-intensity-past-range.json"
            )
        }
    )
    prov = make(rec)
    start = datetime(2023, 5, 20, tzinfo=UTC)
    end = datetime(2023, 6, 14, 6, tzinfo=UTC)
    points = await prov.history("DE", start, end)
    starts = [r.url.params["start"] for r in rec.requests]
    assert starts == ["2023-05-20T00:00:00Z", "2023-05-30T00:00:00Z", "2023-06-09T00:00:00Z"]
    assert rec.requests[-1].url.params["end"] == "2023-06-14T06:00:00Z"
    assert points and all(p.start < end for p in points)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": "Invalid auth-token", "message": "The provided token is invalid."}, "auth"),
        (
            401,
            {"error": "Unauthorized", "message": "You have exceeded your request limit"},
            "rate_limited",
        ),
        (429, {"error": "Too Many Requests", "message": "slow down"}, "rate_limited"),
        (500, {"error": "Internal Server Error", "message": "boom"}, "server"),
        (404, {"error": "Not Found", "message": "Zone 'XX' does not exist"}, "unknown_zone"),
    ],
)
async def test_errors_are_classified(status: int, body: dict[str, str], kind: str) -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": httpx.Response(
                status, json=body, headers={"Retry-After": "120"}
            )
        }
    )
    prov = make(rec)
    with pytest.raises(ProviderError) as info:
        await prov.latest(["DE"])
    assert info.value.kind == kind
    assert info.value.status == status
    assert info.value.retry_after == 120.0


async def test_fixture_401_bodies_are_auth_errors() -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": json_response(
                "electricitymaps/error-401-invalid-auth-token.json", 401
            )
        }
    )
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["DE"])
    assert info.value.kind == "auth"
    assert "token is invalid" in str(info.value)


async def test_non_json_body_is_bad_response() -> None:
    rec = Recorder(
        {"/v3/carbon-intensity/latest": httpx.Response(200, text="<html>maintenance</html>")}
    )
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["DE"])
    assert info.value.kind == "bad_response"


async def test_one_unknown_zone_keeps_the_others() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.params["zone"] == "XX":
            return httpx.Response(404, json={"error": "Not Found", "message": "zone XX unknown"})
        return json_response("electricitymaps/carbon-intensity-latest.json")

    rec = Recorder({"/v3/carbon-intensity/latest": route})
    with pytest.raises(PartialFailure) as info:
        await make(rec).latest(["DE", "XX"])
    assert [p.zone for p in info.value.points] == ["DE"]
    assert info.value.errors["XX"].kind == "unknown_zone"


async def test_null_intensity_is_empty() -> None:
    body = {"zone": "DE", "carbonIntensity": None, "datetime": "2023-06-14T23:00:00.000Z"}
    rec = Recorder({"/v3/carbon-intensity/latest": httpx.Response(200, json=body)})
    with pytest.raises(ProviderError) as info:
        await make(rec).latest(["DE"])
    assert info.value.kind == "empty"
