"""Past the forecast horizon a run window is judged by each zone's long-run intensity.

Both views: the simulator's :class:`carbon.series.SeriesView` (the trailing mean of completed
intervals before now, never now or later) and the live :class:`carbon.snapshot.CarbonSnapshot`
(a static value of the same signal, else the serving source's recent readings' mean, else the
latest). Every expected value is computed by hand in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np
import pytest

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig
from carbon.longrun import RecentReadings
from carbon.series import HourlySeries, SeriesView
from carbon.snapshot import CarbonSnapshot, Latest, Source, forecast_from_points
from carbon.types import IntensityPoint, SignalKind
from carbon.window import IntervalSeries
from tests.support.carbon import Recorder, json_response

T0 = datetime(2026, 6, 15, tzinfo=UTC).timestamp()
HOUR = 3600.0
EM_NOW = datetime(2023, 6, 15, 0, 30, tzinfo=UTC).timestamp()  # 90 min after the fixture's hour
STATIC_DE = 481.5  # built-in table, DE 2022


def hourly(zone: str, values: list[float]) -> HourlySeries:
    starts = T0 + HOUR * np.arange(len(values), dtype=np.float64)
    return HourlySeries(zone, starts, np.asarray(values, dtype=np.float64), HOUR, "test")


def test_interval_mean_fills_past_the_end_with_beyond_and_gaps_with_fill() -> None:
    s = IntervalSeries([0.0, 2 * HOUR], [HOUR, 3 * HOUR], [100.0, 300.0])
    # [0, 5h): 100 (1 h) + gap at fill 50 (1 h) + 300 (1 h) + past the end at beyond 10 (2 h)
    mean, covered = s.mean(0.0, 5 * HOUR, 50.0, 10.0)
    assert mean == pytest.approx((100 + 50 + 300 + 2 * 10) / 5) and covered == pytest.approx(0.4)
    # without ``beyond`` every uncovered hour counts at ``fill`` (the behaviour before)
    assert s.mean(0.0, 5 * HOUR, 50.0)[0] == pytest.approx((100 + 50 + 300 + 2 * 50) / 5)
    # a window wholly past the end is all ``beyond``; one inside never reads it
    assert s.mean(4 * HOUR, 6 * HOUR, 50.0, 10.0) == (10.0, 0.0)
    assert s.mean(0.0, HOUR, 50.0, 10.0) == (100.0, 1.0)


# Two zones, hours 0..8. Now is the start of hour 5; the forecast horizon is 2 h (hours 5 and 6)
# and the trailing window 4 h (hours 1..4; hour 0 is older and hour 5 is not over).
A = [1000.0, 10.0, 10.0, 10.0, 10.0, 100.0, 200.0, 900.0, 900.0]
B = [0.0, 150.0, 150.0, 150.0, 150.0, 60.0, 70.0, 5.0, 5.0]
NOW = T0 + 5 * HOUR


def sim_view(a: list[float] = A, b: list[float] = B, now: float = NOW) -> SeriesView:
    series = {"A": hourly("A", a), "B": hourly("B", b)}
    return SeriesView(series, now, horizon_s=2 * HOUR, trailing_s=4 * HOUR)


def test_series_view_window_half_in_the_forecast_half_past_it() -> None:
    view = sim_view()
    assert view.long_run("A") == 10.0 and view.long_run("B") == 150.0
    # [now, now + 4 h): 2 h of forecast, then 2 h at the trailing mean
    a = view.mean_intensity("A", NOW, NOW + 4 * HOUR)
    b = view.mean_intensity("B", NOW, NOW + 4 * HOUR)
    assert a is not None and a.g_per_kwh == pytest.approx((100 + 200 + 2 * 10) / 4)  # 80
    assert b is not None and b.g_per_kwh == pytest.approx((60 + 70 + 2 * 150) / 4)  # 107.5
    # filled with the latest reading instead (the old view) B looked cleaner: (60+70+2*60)/4 =
    # 62.5 against A's (100+200+2*100)/4 = 125; over the long run A is the cleaner zone
    # inside the horizon nothing changes: the forecast alone
    inside = view.mean_intensity("A", NOW, NOW + 2 * HOUR)
    assert inside is not None and inside.g_per_kwh == pytest.approx(150.0)
    # a view of the same series at another time shares the cached sums and agrees with a fresh one
    later = view.at(NOW + 1.5 * HOUR)
    assert later.long_run("A") == sim_view(now=NOW + 1.5 * HOUR).long_run("A") == 32.5


def test_series_view_trailing_mean_never_reads_now_or_later() -> None:
    for now in (NOW, NOW + 1800.0):  # at the start of hour 5 and in the middle of it
        base = sim_view(now=now).long_run("A")
        assert base == 10.0
        # anything in hour 5 (the one holding now) or later cannot move it ...
        future = [*A[:5], *[1e6] * 4]
        assert sim_view(a=future, now=now).long_run("A") == base
        # ... while hour 4, the last one over, does
        past = [*A[:4], 50.0, *A[5:]]
        assert sim_view(a=past, now=now).long_run("A") == pytest.approx((10 * 3 + 50) / 4)
    # before any interval is over there is no trailing mean: the latest value fills
    first = sim_view(now=T0 + 1800.0)
    assert first.long_run("A") is None
    # horizon 2 h from 00:30: hours 0..2 are the forecast (to 03:00); 03:00-05:00 is past it,
    # at the latest value 1000
    mean = first.mean_intensity("A", T0 + 1800.0, T0 + 5 * HOUR)
    assert mean is not None
    assert mean.g_per_kwh == pytest.approx((0.5 * 1000 + 10 + 10 + 2 * 1000) / 4.5)


def source(
    name: str,
    latest: dict[str, float],
    forecast: dict[str, list[float]] | None = None,
    *,
    static: dict[str, float] | None = None,
    long_run: dict[str, float] | None = None,
    kind: SignalKind = "average",
) -> Source:
    """A snapshot source: latest values at ``NOW``, hourly forecasts from ``NOW``."""
    forecasts = {}
    for zone, hours in (forecast or {}).items():
        points = [
            IntensityPoint(
                zone,
                datetime.fromtimestamp(NOW + i * HOUR, tz=UTC),
                datetime.fromtimestamp(NOW + (i + 1) * HOUR, tz=UTC),
                g,
            )
            for i, g in enumerate(hours)
        ]
        fc = forecast_from_points(points, name, zone)
        assert fc is not None
        forecasts[zone] = fc
    return Source(
        name=name,
        kind=kind,
        static=static is not None,
        latest=MappingProxyType({z: Latest(g, NOW, False, kind) for z, g in latest.items()}),
        forecasts=MappingProxyType(forecasts),
        static_values=MappingProxyType(static or {}),
        long_run=MappingProxyType(long_run or {}),
    )


def snapshot(*chain: Source) -> CarbonSnapshot:
    return CarbonSnapshot(chain, stale_after=7200.0, clock=lambda: NOW)


def test_snapshot_window_half_in_the_forecast_half_past_it() -> None:
    live = source("em", {"A": 100.0, "B": 60.0}, {"A": [100.0, 200.0], "B": [60.0, 70.0]})
    snap = snapshot(live, source("static", {}, static={"A": 10.0, "B": 150.0}))
    a = snap.mean_intensity("A", NOW, NOW + 4 * HOUR)
    b = snap.mean_intensity("B", NOW, NOW + 4 * HOUR)
    assert a is not None and a.g_per_kwh == pytest.approx((100 + 200 + 2 * 10) / 4)  # 80
    assert b is not None and b.g_per_kwh == pytest.approx((60 + 70 + 2 * 150) / 4)  # 107.5
    assert (a.source, a.estimated) == ("em", True)  # served by the live source, an estimate
    inside = snap.mean_intensity("A", NOW + 1800.0, NOW + 2 * HOUR)
    assert inside is not None and inside.g_per_kwh == pytest.approx((0.5 * 100 + 200) / 1.5)


def test_snapshot_long_run_fallback_order() -> None:
    fc = {"A": [100.0, 200.0]}
    window = (NOW, NOW + 4 * HOUR)

    def mean(snap: CarbonSnapshot, kind: SignalKind = "average") -> float:
        r = snap.mean_intensity("A", *window, kind)
        assert r is not None
        return r.g_per_kwh

    # 1. a static value of the same signal wins over the recent readings' mean
    recent = source("em", {"A": 100.0}, fc, long_run={"A": 40.0})
    assert mean(snapshot(recent, source("static", {}, static={"A": 10.0}))) == 80.0
    # 2. no static row for the zone: the serving source's recent readings' mean
    assert mean(snapshot(recent, source("static", {}, static={"B": 10.0}))) == 95.0
    # a static table of the other signal is not this signal's long run
    wt = source("wt", {"A": 100.0}, fc, long_run={"A": 40.0}, kind="marginal")
    with_static = snapshot(wt, source("static", {}, static={"A": 10.0}))
    assert mean(with_static, "marginal") == 95.0  # (100 + 200 + 2 * 40) / 4
    # 3. neither: the latest value (the behaviour before)
    bare = source("em", {"A": 100.0}, fc)
    assert mean(snapshot(bare, source("static", {}, static={}))) == 125.0  # (100+200+2*100)/4
    # no forecast at all, or a stale value: the latest value for the whole window
    assert mean(snapshot(source("em", {"A": 100.0}, long_run={"A": 40.0}))) == 100.0


def test_snapshot_each_zone_past_the_horizon_uses_its_own_long_run() -> None:
    """One snapshot, zones that reach the long run by different steps of the fallback order."""
    fc = {"A": [100.0, 200.0], "B": [70.0, 70.0]}
    recent = source("em", {"A": 100.0, "B": 70.0}, fc, long_run={"A": 40.0})
    snap = snapshot(recent, source("static", {}, static={"B": 10.0, "C": 300.0}))

    def mean(zone: str) -> float | None:
        r = snap.mean_intensity(zone, NOW, NOW + 4 * HOUR)
        return None if r is None else r.g_per_kwh

    assert mean("A") == 95.0  # 2. the recent readings' mean: (100 + 200 + 2 * 40) / 4
    assert mean("B") == 40.0  # 1. the static value of the signal: (70 + 70 + 2 * 10) / 4
    assert mean("C") == 300.0  # served by static alone: its value for the whole window
    assert mean("Z") is None  # no source knows the zone


def test_recent_readings_mean_distinct_intervals_over_the_window() -> None:
    recent = RecentReadings(window_s=3 * HOUR)
    recent.add("A", T0, 100.0)
    recent.add("A", T0, 120.0)  # the same interval re-read: replaced, not counted twice
    recent.add("A", T0 - HOUR, 999.0)  # older than the last: ignored
    recent.add("A", T0 + HOUR, 200.0)
    assert recent.means() == {"A": pytest.approx(160.0)}
    recent.add("A", T0 + 4 * HOUR, 400.0)  # T0 and T0 + 1 h are 3 h old or more
    assert recent.means() == {"A": pytest.approx(400.0)}


async def test_cache_judges_a_month_long_window_by_the_static_annual_mean() -> None:
    """The real cache on the Electricity Maps fixtures (chain: electricitymaps, static)."""
    cache = CarbonCache(
        CarbonConfig.model_validate(
            {
                "providers": [{"name": "electricitymaps", "url": "http://em.test"}],
                "fallback": ["electricitymaps", "static"],
            }
        ),
        clock=lambda: EM_NOW,
        transport=Recorder(
            {
                "/v3/carbon-intensity/latest": json_response(
                    "electricitymaps/carbon-intensity-latest.json"
                ),
                "/v3/carbon-intensity/forecast": json_response(
                    "electricitymaps/carbon-intensity-forecast.json"
                ),
            }
        ).transport(),
        zones=["DE"],
    )
    snap = await cache.refresh_once()
    series = snap.forecast("DE")
    assert series is not None
    end = series.ends[-1]
    covered = snap.mean_intensity("DE", EM_NOW, end)
    month = snap.mean_intensity("DE", EM_NOW, EM_NOW + 30 * 86400)
    assert covered is not None and month is not None
    # the forecast's own mean over its part, then the built-in annual mean (DE 2022) to the end
    want = (covered.g_per_kwh * (end - EM_NOW) + STATIC_DE * (EM_NOW + 30 * 86400 - end)) / (
        30 * 86400
    )
    assert month.g_per_kwh == pytest.approx(want)
    assert month.source == "electricitymaps"
    # its readings are kept too (the long run where no static value of the signal exists)
    assert cache._states["electricitymaps"].source().long_run == {"DE": 434.0}
    await cache.stop()


def test_recent_readings_running_mean_agrees_with_the_plain_mean() -> None:
    rng = np.random.default_rng(3)
    recent = RecentReadings(window_s=24 * HOUR)
    values: list[tuple[float, float]] = []
    t = T0
    for _ in range(200):
        t += float(rng.choice([0.0, HOUR, 2 * HOUR]))  # repeats, hourly and a missed hour
        g = float(rng.uniform(0, 800))
        recent.add("A", t, g)
        values = [(s, v) for s, v in values if s != t] + [(t, g)]
    kept = [v for s, v in values if s > t - 24 * HOUR]
    assert recent.means()["A"] == pytest.approx(sum(kept) / len(kept))
