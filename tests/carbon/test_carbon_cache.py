"""CarbonCache: fallback, staleness, faults (each tested), back-off, circuit, hot reload.

Every fault drives the real Electricity Maps (or Carbon Aware SDK) httpx client against
fixture-shaped responses; the checks are the issue's: scoring keeps working on the fallback,
the event is logged once per episode and counted, and nothing raises out of ``view()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from carbon import metrics
from carbon.cache import CarbonCache
from carbon.config import CarbonConfig, ProviderConfig
from carbon.providers.base import Provider
from tests.support.carbon import LoopbackServer, Recorder, fixture, fixture_route, json_response

NOW = datetime(2023, 6, 15, 0, 30, tzinfo=UTC).timestamp()  # 90 min after the fixture's hour
STATIC_DE = 481.5  # built-in table, DE 2022


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def em_config(**extra: object) -> CarbonConfig:
    return CarbonConfig.model_validate(
        {
            "providers": [{"name": "electricitymaps", "url": "http://em.test"}],
            "fallback": ["electricitymaps", "static"],
            **extra,
        }
    )


def latest_ok() -> httpx.Response:
    return json_response("electricitymaps/carbon-intensity-latest.json")


def forecast_ok() -> httpx.Response:
    return json_response("electricitymaps/carbon-intensity-forecast.json")


def em_routes(latest: Callable[[httpx.Request], httpx.Response] | httpx.Response) -> Recorder:
    return Recorder(
        {"/v3/carbon-intensity/latest": latest, "/v3/carbon-intensity/forecast": forecast_ok()}
    )


def with_value(value: float) -> httpx.Response:
    body = fixture("electricitymaps/carbon-intensity-latest.json")
    body["carbonIntensity"] = value
    return httpx.Response(200, json=body)


def raise_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


FAULTS: dict[str, tuple[Callable[[], object], str]] = {
    "500": (lambda: httpx.Response(500, json={"error": "Internal Server Error"}), "server"),
    "429": (
        lambda: httpx.Response(
            429, json={"error": "Too Many Requests"}, headers={"Retry-After": "1"}
        ),
        "rate_limited",
    ),
    "401": (
        lambda: json_response("electricitymaps/error-401-invalid-auth-token.json", 401),
        "auth",
    ),
    "timeout": (lambda: raise_timeout, "timeout"),
    "empty list": (lambda: httpx.Response(200, json=[]), "bad_response"),
    "non-JSON": (lambda: httpx.Response(200, text="<html>Bad gateway</html>"), "bad_response"),
    "negative": (lambda: with_value(-12), "invalid_value"),
    "absurd": (lambda: with_value(2500), "invalid_value"),
    "unknown zone": (
        lambda: httpx.Response(404, json={"error": "Not Found", "message": "zone DE unknown"}),
        "unknown_zone",
    ),
}


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage())


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_fault_falls_back_logs_once_and_counts(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    make_response, kind = FAULTS[fault]
    rec = em_routes(make_response())  # type: ignore[arg-type]
    clock = Clock()
    cache = CarbonCache(em_config(), clock=clock, transport=rec.transport(), zones=["DE"])
    before = metrics.error_count("electricitymaps", kind)
    caplog.set_level(logging.INFO, logger="lowcarb.carbon")
    for _ in range(3):
        snap = await cache.refresh_once()
        clock.now += 2
        reading = snap.reading("DE")
        assert reading is not None
        assert (reading.source, reading.g_per_kwh, reading.stale) == ("static", STATIC_DE, False)
        mean = snap.mean_intensity("DE", clock.now, clock.now + 3600)
        assert mean is not None and mean.g_per_kwh == STATIC_DE
        assert snap.forecast("DE") is None
    assert cache.errors[("electricitymaps", kind)] >= 1
    assert (
        metrics.error_count("electricitymaps", kind) - before
        == cache.errors[("electricitymaps", kind)]
    )
    assert warnings(caplog, f"failing ({kind})") == 1
    assert warnings(caplog, "served by fallback static") == 1
    assert cache.fallbacks[("DE", "static")] == 1
    await cache.stop()


async def test_recovery_returns_to_primary_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    state = {"fail": True}

    def latest(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="down") if state["fail"] else latest_ok()

    rec = em_routes(latest)
    clock = Clock()
    cache = CarbonCache(em_config(), clock=clock, transport=rec.transport(), zones=["DE"])
    caplog.set_level(logging.INFO, logger="lowcarb.carbon")
    await cache.refresh_once()
    assert cache.view().reading("DE").source == "static"  # type: ignore[union-attr]
    state["fail"] = False
    snap = await cache.refresh_once()
    reading = snap.reading("DE")
    assert reading is not None and reading.source == "electricitymaps"
    assert reading.g_per_kwh == 434.0 and reading.age_s == 5400 and reading.estimated
    assert any("recovered from server" in r.getMessage() for r in caplog.records)
    assert any("back on primary" in r.getMessage() for r in caplog.records)
    # a second episode is logged again (once)
    state["fail"] = True
    await cache.refresh_once()
    await cache.refresh_once()
    assert warnings(caplog, "failing (server)") == 2
    await cache.stop()


async def test_forecast_mean_and_gaps_filled_with_latest() -> None:
    body = fixture("electricitymaps/carbon-intensity-forecast.json")
    body["forecast"] = [f for f in body["forecast"] if f["datetime"][11:13] not in ("02", "03")]
    body["forecast"][1]["carbonIntensity"] = -40  # 01:00 point: invalid, dropped and counted
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": latest_ok(),
            "/v3/carbon-intensity/forecast": httpx.Response(200, json=body),
        }
    )
    cache = CarbonCache(em_config(), clock=Clock(), transport=rec.transport(), zones=["DE"])
    snap = await cache.refresh_once()
    # window 00:30-05:00: 00:30-01:00 = 454 (0.5 h), 01:00-04:00 gap -> latest 434 (3 h),
    # 04:00-05:00 = 452 (1 h)
    mean = snap.mean_intensity("DE", NOW, NOW + 4.5 * 3600)
    expected = (0.5 * 454 + 3 * 434 + 1 * 452) / 4.5
    assert mean is not None and mean.g_per_kwh == pytest.approx(expected)
    assert mean.source == "electricitymaps" and mean.estimated
    assert cache.errors[("electricitymaps", "invalid_value")] == 1
    series = snap.forecast("DE")
    assert series is not None and -40.0 not in series.values and 454.0 in series.values
    # a window entirely beyond the forecast falls back to the latest value
    far = snap.mean_intensity("DE", NOW + 48 * 3600, NOW + 50 * 3600)
    assert far is not None and far.g_per_kwh == 434.0
    await cache.stop()


async def test_paid_forecast_401_keeps_latest_only() -> None:
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": latest_ok(),
            "/v3/carbon-intensity/forecast": json_response(
                "electricitymaps/error-401-invalid-auth-token.json", 401
            ),
        }
    )
    cache = CarbonCache(em_config(), clock=Clock(), transport=rec.transport(), zones=["DE"])
    snap = await cache.refresh_once()
    mean = snap.mean_intensity("DE", NOW, NOW + 3600)
    assert mean is not None and (mean.source, mean.g_per_kwh) == ("electricitymaps", 434.0)
    assert cache.errors[("electricitymaps", "auth")] == 1
    st = cache._states["electricitymaps"]
    assert st.failures == 0 and not st.circuit_open
    await cache.stop()


async def test_stale_value_falls_back_then_is_served_flagged_when_nothing_else() -> None:
    rec = em_routes(latest_ok())
    clock = Clock()
    cache = CarbonCache(em_config(), clock=clock, transport=rec.transport(), zones=["DE", "XX"])
    await cache.refresh_once()
    clock.now += 3600  # value now 2.5 h old > staleAfter 2 h
    reading = cache.view().reading("DE")
    assert reading is not None and reading.source == "static" and not reading.stale
    cfg = em_config(builtinStatic=False)
    cache2 = CarbonCache(cfg, clock=clock, transport=rec.transport(), zones=["DE"])
    clock.now = NOW
    await cache2.refresh_once()
    clock.now += 3600
    reading = cache2.view().reading("DE")
    assert reading is not None
    assert (reading.source, reading.stale, reading.g_per_kwh) == ("electricitymaps", True, 434.0)
    assert cache2.view().reading("NOWHERE") is None
    await cache.stop()
    await cache2.stop()


async def test_retry_after_and_backoff_skip_calls() -> None:
    rec = em_routes(httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "120"}))
    clock = Clock()
    cache = CarbonCache(em_config(), clock=clock, transport=rec.transport(), zones=["DE"])
    await cache.refresh_once(force=False)
    assert len(rec.requests) == 1
    clock.now += 60
    await cache.refresh_once(force=False)
    assert len(rec.requests) == 1  # still inside Retry-After
    clock.now += 61
    await cache.refresh_once(force=False)
    assert len(rec.requests) == 2
    await cache.stop()


async def test_circuit_opens_after_repeated_failures_and_closes_on_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = {"fail": True}

    def latest(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "boom"}) if state["fail"] else latest_ok()

    rec = em_routes(latest)
    clock = Clock()
    cfg = em_config(
        backoff={"initial": "1s", "max": "4s"}, circuit={"failures": 3, "openFor": "5m"}
    )
    cache = CarbonCache(cfg, clock=clock, transport=rec.transport(), zones=["DE"])
    caplog.set_level(logging.INFO, logger="lowcarb.carbon")
    for _ in range(3):
        await cache.refresh_once(force=False)
        clock.now += 5  # past the (1s, 2s, 4s) back-off
    st = cache._states["electricitymaps"]
    assert st.circuit_open and st.failures == 3
    assert metrics.CIRCUIT_OPEN.labels(provider="electricitymaps")._value.get() == 1
    assert warnings(caplog, "circuit open") == 1
    calls = len(rec.requests)
    for _ in range(10):  # open: no calls for 5 minutes
        clock.now += 20
        await cache.refresh_once(force=False)
    assert len(rec.requests) == calls
    state["fail"] = False
    clock.now += 200
    snap = await cache.refresh_once(force=False)  # half-open trial succeeds
    reading = snap.reading("DE")
    assert reading is not None and reading.source == "electricitymaps"
    assert cache._states["electricitymaps"].failures == 0
    assert not cache._states["electricitymaps"].circuit_open
    await cache.stop()


async def test_empty_list_from_carbon_aware_sdk_falls_back() -> None:
    rec = Recorder({"/emissions/bylocations": httpx.Response(200, json=[])})
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "casdk", "type": "carbonaware", "url": "http://casdk.test"}],
            "fallback": ["casdk", "static"],
        }
    )
    cache = CarbonCache(cfg, clock=Clock(), transport=rec.transport(), zones=["DE"])
    snap = await cache.refresh_once()
    assert snap.reading("DE").source == "static"  # type: ignore[union-attr]
    assert cache.errors[("casdk", "empty")] == 1
    await cache.stop()


async def test_untracked_zone_served_by_static_then_fetched() -> None:
    rec = em_routes(latest_ok())
    cache = CarbonCache(em_config(), clock=Clock(), transport=rec.transport())
    reading = cache.view().reading("DE")
    assert reading is not None and reading.source == "static"
    assert "DE" in cache.zones
    snap = await cache.refresh_once()
    assert snap.reading("DE").source == "electricitymaps"  # type: ignore[union-attr]
    assert rec.requests[0].url.params["zone"] == "DE"
    await cache.stop()


async def test_signal_kind_prefers_matching_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWCARB_WATTTIME_USERNAME", "u")
    monkeypatch.setenv("LOWCARB_WATTTIME_PASSWORD", "p")
    rec = Recorder(
        {
            "/v3/carbon-intensity/latest": latest_ok(),
            "/v3/carbon-intensity/forecast": forecast_ok(),
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/forecast.json"),
        }
    )
    cfg = CarbonConfig.model_validate(
        {
            "providers": [
                {"name": "electricitymaps", "url": "http://em.test"},
                {
                    "name": "watttime",
                    "url": "http://wt.test",
                    "signal": "marginal",
                    "forecast": False,
                },
            ],
            "fallback": ["electricitymaps", "watttime", "static"],
        }
    )
    clock = Clock(datetime(2024, 6, 18, 18, 42, tzinfo=UTC).timestamp())
    cache = CarbonCache(cfg, clock=clock, transport=rec.transport(), zones=["US-CAL-CISO"])
    snap = await cache.refresh_once()
    marginal = snap.reading("US-CAL-CISO", "marginal")
    assert marginal is not None and (marginal.source, marginal.kind) == ("watttime", "marginal")
    assert marginal.g_per_kwh == pytest.approx(826.0 * 0.45359237)
    average = snap.reading("US-CAL-CISO", "average")
    assert average is not None and average.kind == "average"
    assert average.source == "static"  # the EM fixture is a year older than the clock: stale
    await cache.stop()


async def test_reconfigure_keeps_unchanged_provider_state() -> None:
    rec = em_routes(latest_ok())
    clock = Clock()
    cache = CarbonCache(em_config(), clock=clock, transport=rec.transport(), zones=["DE"])
    await cache.refresh_once()
    st = cache._states["electricitymaps"]
    cache.reconfigure(em_config(staleAfter="30m"))
    assert cache._states["electricitymaps"] is st
    assert cache.view().reading("DE").source == "static"  # type: ignore[union-attr]  # 90 min > 30m
    cache.reconfigure(
        CarbonConfig.model_validate(
            {
                "providers": [{"name": "electricitymaps", "url": "http://em2.test"}],
                "fallback": ["electricitymaps", "static"],
                "static": {"DE": 300},
            }
        )
    )
    assert cache._states["electricitymaps"] is not st
    reading = cache.view().reading("DE")
    assert reading is not None and (reading.source, reading.g_per_kwh) == ("static", 300.0)
    await cache.stop()


async def test_background_refresh_and_readers_never_wait() -> None:
    release = asyncio.Event()

    async def slow_latest(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return latest_ok()

    rec = Recorder(
        {"/v3/carbon-intensity/latest": slow_latest, "/v3/carbon-intensity/forecast": forecast_ok()}
    )
    cfg = CarbonConfig.model_validate(
        {
            "providers": [
                {
                    "name": "electricitymaps",
                    "url": "http://em.test",
                    "refresh": "50ms",
                    "timeout": "5s",
                }
            ],
            "fallback": ["electricitymaps", "static"],
        }
    )
    cache = CarbonCache(cfg, clock=Clock(), transport=rec.transport(), zones=["DE"])
    await cache.start()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if rec.requests:
            break
    assert rec.requests, "background task did not call the provider"
    reading = cache.view().reading("DE")  # provider call is hanging right now
    assert reading is not None and reading.source == "static"
    release.set()
    for _ in range(300):
        await asyncio.sleep(0.01)
        if cache.view().reading("DE").source == "electricitymaps":  # type: ignore[union-attr]
            break
    assert cache.view().reading("DE").source == "electricitymaps"  # type: ignore[union-attr]
    await cache.stop()
    assert all(st.task is None for st in cache._states.values())


def test_default_cache_is_offline_static() -> None:
    cache = CarbonCache()
    view = cache.view()
    assert view.reading("FR").g_per_kwh == 99.4  # type: ignore[union-attr]
    assert view.reading("SE-SE3").source == "static"  # type: ignore[union-attr]
    assert view.reading("NOT-A-ZONE") is None
    gb = view.reading("GB")
    assert gb is not None and (gb.g_per_kwh, gb.age_s, gb.stale) == (234.8, 0.0, False)


async def test_real_timeout_over_loopback_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    routes = [
        fixture_route(
            "/v3/carbon-intensity/latest", "electricitymaps/carbon-intensity-latest.json", delay=1.0
        )
    ]
    caplog.set_level(logging.INFO, logger="lowcarb.carbon")
    with LoopbackServer(routes) as server:
        cfg = CarbonConfig.model_validate(
            {
                "providers": [{"name": "electricitymaps", "url": server.url, "timeout": "200ms"}],
                "fallback": ["electricitymaps", "static"],
            }
        )
        cache = CarbonCache(cfg, clock=Clock(), zones=["DE"])
        snap = await cache.refresh_once()
        await cache.stop()
    reading = snap.reading("DE")
    assert reading is not None and (reading.source, reading.g_per_kwh) == ("static", STATIC_DE)
    assert cache.errors[("electricitymaps", "timeout")] == 1
    assert warnings(caplog, "failing (timeout)") == 1


async def test_reconfigure_from_another_thread_applies_on_the_loop() -> None:
    rec = em_routes(latest_ok())
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "electricitymaps", "url": "http://em.test", "refresh": "1h"}],
            "fallback": ["electricitymaps", "static"],
        }
    )
    cache = CarbonCache(cfg, clock=Clock(), transport=rec.transport(), zones=["DE"])
    await cache.start()
    await asyncio.to_thread(cache.reconfigure, CarbonConfig.model_validate({"static": {"DE": 1.0}}))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if cache.config.static:
            break
    assert list(cache._states) == ["static"]
    reading = cache.view().reading("DE")
    assert reading is not None and (reading.source, reading.g_per_kwh) == ("static", 1.0)
    await cache.stop()


async def test_metrics_expose_intensity_age_errors_and_fallbacks() -> None:
    from prometheus_client import REGISTRY

    def latest(request: httpx.Request) -> httpx.Response:
        if request.url.params["zone"] == "SE-SE3":
            return httpx.Response(404, json={"error": "Not Found", "message": "zone unknown"})
        return latest_ok()

    rec = em_routes(latest)
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "em-metrics", "type": "electricitymaps", "url": "http://em.t"}],
            "fallback": ["em-metrics", "static"],
        }
    )
    cache = CarbonCache(cfg, clock=Clock(), transport=rec.transport(), zones=["DE", "SE-SE3"])
    sample = REGISTRY.get_sample_value
    fallback_labels = {"zone": "SE-SE3", "source": "static"}
    before = sample("lowcarb_carbon_fallbacks_total", fallback_labels) or 0.0
    await cache.refresh_once()
    await cache.refresh_once()
    assert sample("lowcarb_carbon_intensity_g_per_kwh", {"zone": "DE", "kind": "average"}) == 434
    assert sample("lowcarb_carbon_data_age_seconds", {"zone": "DE"}) == 5400
    assert (
        sample("lowcarb_carbon_intensity_g_per_kwh", {"zone": "SE-SE3", "kind": "average"}) == 23.4
    )
    assert sample("lowcarb_carbon_fallbacks_total", fallback_labels) == before + 1
    errors = {"provider": "em-metrics", "kind": "unknown_zone"}
    assert sample("lowcarb_carbon_provider_errors_total", errors) == 1
    await cache.stop()


async def test_one_zone_with_a_bad_body_does_not_back_off_the_provider() -> None:
    def latest(request: httpx.Request) -> httpx.Response:
        if request.url.params["zone"] == "FR":
            return httpx.Response(200, text="<html>oops</html>")
        return latest_ok()

    rec = em_routes(latest)
    cache = CarbonCache(em_config(), clock=Clock(), transport=rec.transport(), zones=["DE", "FR"])
    snap = await cache.refresh_once(force=False)
    st = cache._states["electricitymaps"]
    assert st.failures == 0 and st.next_attempt == 0.0
    de, fr = snap.reading("DE"), snap.reading("FR")
    assert de is not None and de.source == "electricitymaps"
    assert fr is not None and (fr.source, fr.g_per_kwh) == ("static", 99.4)
    assert cache.errors[("electricitymaps", "bad_response")] == 1
    await cache.stop()


async def test_marginal_primary_is_not_reported_as_a_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOWCARB_WATTTIME_USERNAME", "u")
    monkeypatch.setenv("LOWCARB_WATTTIME_PASSWORD", "p")
    rec = Recorder(
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/forecast.json"),
            "/v3/carbon-intensity/latest": latest_ok(),
            "/v3/carbon-intensity/forecast": forecast_ok(),
        }
    )
    cfg = CarbonConfig.model_validate(
        {
            "providers": [
                {"name": "watttime", "url": "http://wt.test", "signal": "marginal"},
                {"name": "electricitymaps", "url": "http://em.test"},
            ],
            "fallback": ["watttime", "electricitymaps", "static"],
        }
    )
    clock = Clock(datetime(2024, 6, 18, 18, 42, tzinfo=UTC).timestamp())
    cache = CarbonCache(cfg, clock=clock, transport=rec.transport(), zones=["US-CAL-CISO"])
    caplog.set_level(logging.INFO, logger="lowcarb.carbon")
    snap = await cache.refresh_once()
    marginal = snap.reading("US-CAL-CISO", "marginal")
    assert marginal is not None and (marginal.source, marginal.kind) == ("watttime", "marginal")
    average = snap.reading("US-CAL-CISO", "average")  # EM's 2023 fixture is stale -> static
    assert average is not None and average.source == "static"
    assert warnings(caplog, "served by fallback") == 0  # the primary (marginal) is healthy
    mean = snap.mean_intensity("US-CAL-CISO", clock.now, clock.now + 3600, "marginal")
    assert mean is not None and mean.source == "watttime" and mean.estimated
    await cache.stop()


async def test_reconfigure_with_a_broken_provider_keeps_last_good() -> None:
    def broken(pc: ProviderConfig) -> Provider:
        raise RuntimeError("plugin exploded")

    cache = CarbonCache(CarbonConfig.model_validate({"static": {"DE": 5}}), clock=Clock())
    cache._factory = broken
    bad = CarbonConfig.model_validate(
        {"providers": [{"name": "ukgrid"}], "fallback": ["ukgrid", "static"]}
    )
    cache.reconfigure(bad)
    assert cache.config.static == {"DE": 5} and list(cache._states) == ["static"]
    reading = cache.view().reading("DE")
    assert reading is not None and reading.g_per_kwh == 5.0
