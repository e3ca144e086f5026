"""WattTime v3 provider: login/token refresh, lbs/MWh -> g/kWh, forecast and historical."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
import pytest

from carbon.config import ProviderConfig
from carbon.providers.base import ProviderError
from carbon.providers.watttime import LBS_PER_MWH_TO_G_PER_KWH, WattTime
from tests.support.carbon import ContractCase, Recorder, fixture, json_response

LOGIN_TOKEN = fixture("watttime/login.json")["token"]
CONTRACT = ContractCase(
    zone="US-CAL-CISO",
    now=datetime(2024, 6, 18, 18, 41, tzinfo=UTC).timestamp(),
    settings={"signal": "marginal"},
    routes={"/login": "watttime/login.json", "/v3/forecast": "watttime/forecast.json"},
    env={"LOWCARB_WATTTIME_USERNAME": "u", "LOWCARB_WATTTIME_PASSWORD": "p"},
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWCARB_WATTTIME_USERNAME", "alice")
    monkeypatch.setenv("LOWCARB_WATTTIME_PASSWORD", "s3cret")


def make(rec: Recorder, clock: Clock, **cfg: object) -> WattTime:
    config = ProviderConfig.model_validate({"name": "watttime", "signal": "marginal", **cfg})
    return WattTime(config, transport=rec.transport(), clock=clock)


def routes() -> Recorder:
    return Recorder(
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/forecast.json"),
            "/v3/historical": json_response("watttime/historical-include-imputed-marker.json"),
        }
    )


async def test_latest_logs_in_and_converts_units(creds: None) -> None:
    rec = routes()
    prov = make(rec, Clock(datetime(2024, 6, 18, 18, 41, tzinfo=UTC).timestamp()))
    [point] = await prov.latest(["US-CAL-CISO"])
    login, call = rec.requests
    expected = base64.b64encode(b"alice:s3cret").decode()
    assert login.headers["authorization"] == f"Basic {expected}"
    assert call.headers["authorization"] == f"Bearer {LOGIN_TOKEN}"
    assert call.url.params["region"] == "CAISO_NORTH"  # built-in zone -> WattTime region
    assert call.url.params["signal_type"] == "co2_moer"
    assert point.g_per_kwh == pytest.approx(826.0 * 0.45359237)
    assert point.kind == "marginal" and point.factor == "direct"
    assert (point.end - point.start).total_seconds() == 300


async def test_token_reused_then_refreshed_before_expiry(creds: None) -> None:
    rec = routes()
    clock = Clock(datetime(2024, 6, 18, 18, 41, tzinfo=UTC).timestamp())
    prov = make(rec, clock, zones={"X": "CAISO_NORTH"})
    await prov.latest(["X"])
    clock.now += 20 * 60
    await prov.latest(["X"])
    assert prov.logins == 1
    clock.now += 6 * 60  # 26 min after login: within the 5-min margin of the 30-min lifetime
    await prov.latest(["X"])
    assert prov.logins == 2
    assert rec.paths().count("/login") == 2


async def test_401_triggers_one_relogin(creds: None) -> None:
    calls = {"n": 0}

    def forecast(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(401, json={"error": "Unauthorized", "message": "token expired"})
        return json_response("watttime/forecast.json")

    rec = Recorder({"/login": json_response("watttime/login.json"), "/v3/forecast": forecast})
    prov = make(rec, Clock(1718736000.0), zones={"X": "CAISO_NORTH"})
    [point] = await prov.latest(["X"])
    assert point.g_per_kwh > 0
    assert rec.paths() == ["/login", "/v3/forecast", "/login", "/v3/forecast"]


async def test_missing_credentials_is_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOWCARB_WATTTIME_USERNAME", raising=False)
    monkeypatch.delenv("LOWCARB_WATTTIME_PASSWORD", raising=False)
    rec = routes()
    with pytest.raises(ProviderError) as info:
        await make(rec, Clock(0.0), zones={"X": "CAISO_NORTH"}).latest(["X"])
    assert info.value.kind == "auth"
    assert "LOWCARB_WATTTIME_USERNAME" in str(info.value)
    assert rec.requests == []


async def test_forecast_horizon_and_conversion(creds: None) -> None:
    rec = routes()
    prov = make(rec, Clock(1718736000.0), zones={"X": "CAISO_NORTH"})
    start = datetime(2024, 6, 18, 18, 40, tzinfo=UTC)
    end = datetime(2024, 6, 18, 19, 0, tzinfo=UTC)
    points = await prov.forecast("X", start, end)
    raw = fixture("watttime/forecast.json")["data"][:4]
    assert [p.g_per_kwh for p in points] == pytest.approx(
        [d["value"] * LBS_PER_MWH_TO_G_PER_KWH for d in raw]
    )
    assert all(p.estimated for p in points)
    assert rec.requests[-1].url.params["horizon_hours"] == "1"


async def test_history_marks_imputed_points_estimated(creds: None) -> None:
    rec = routes()
    prov = make(rec, Clock(1718736000.0), zones={"X": "CAISO_NORTH"})
    start = datetime(2024, 6, 17, tzinfo=UTC)
    points = await prov.history("X", start, datetime(2024, 6, 17, 1, tzinfo=UTC))
    assert len(points) == 12
    assert [p.estimated for p in points][6:9] == [False, True, True]
    assert rec.requests[-1].url.params["include_imputed_marker"] == "true"


async def test_invalid_scope_is_unknown_zone(creds: None) -> None:
    rec = Recorder(
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/error-403-invalid-scope.json", 403),
        }
    )
    with pytest.raises(ProviderError) as info:
        await make(rec, Clock(0.0), zones={"X": "PJM_DC"}).latest(["X"])
    assert info.value.kind == "unknown_zone"


async def test_percentile_units_are_rejected(creds: None) -> None:
    rec = Recorder(
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/signal-index.json"),
        }
    )
    with pytest.raises(ProviderError) as info:
        await make(rec, Clock(0.0), zones={"X": "CAISO_NORTH"}).latest(["X"])
    assert info.value.kind == "bad_response" and "percentile" in str(info.value)


async def test_bad_region_400_is_unknown_zone(creds: None) -> None:
    body = {"error": "INVALID_QUERY_PARAMS", "message": "Invalid region: DE-XX"}
    rec = Recorder(
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": httpx.Response(400, json=body),
        }
    )
    with pytest.raises(ProviderError) as info:
        await make(rec, Clock(0.0), zones={"X": "DE-XX"}).latest(["X"])
    assert info.value.kind == "unknown_zone"
