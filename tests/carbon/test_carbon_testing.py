"""The test double :class:`carbon.testing.FixedView` answers as the cache's snapshot does."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from carbon.snapshot import CarbonSnapshot, Latest, Source, forecast_from_points
from carbon.testing import FixedView
from carbon.types import CarbonView, IntensityPoint

T0 = datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp()
HOUR = 3600.0
HOURS = [300.0, 100.0, 500.0, 250.0]


def snapshot(latest: float, hours: list[float]) -> CarbonSnapshot:
    """The real snapshot holding the same latest value and hourly forecast for zone Z."""
    points = [
        IntensityPoint(
            "Z",
            datetime.fromtimestamp(T0 + i * HOUR, tz=UTC),
            datetime.fromtimestamp(T0 + (i + 1) * HOUR, tz=UTC),
            g,
        )
        for i, g in enumerate(hours)
    ]
    forecast = forecast_from_points(points, "test", "Z")
    assert forecast is not None
    source = Source(
        name="test",
        kind="average",
        static=False,
        latest=MappingProxyType({"Z": Latest(latest, T0, False, "average")}),
        forecasts=MappingProxyType({"Z": forecast}),
    )
    return CarbonSnapshot((source,), stale_after=7200.0, clock=lambda: T0)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0, T0 + HOUR),  # one hour
        (T0 + 1800, T0 + 2.5 * HOUR),  # straddles three hours
        (T0 + 3 * HOUR, T0 + 6 * HOUR),  # runs past the forecast: the rest at the latest value
        (T0 - HOUR, T0 + HOUR),  # starts before it
        (T0 + 10 * HOUR, T0 + 11 * HOUR),  # not covered at all: the latest value
    ],
)
def test_window_means_match_the_snapshot(start: float, end: float) -> None:
    double = FixedView({"Z": 280.0}, {"Z": HOURS}, start_s=T0)
    real = snapshot(280.0, HOURS)
    got, want = double.mean_intensity("Z", start, end), real.mean_intensity("Z", start, end)
    assert got is not None and want is not None
    assert got.g_per_kwh == pytest.approx(want.g_per_kwh)
    assert got.estimated == want.estimated
    assert double.forecast("Z") == real.forecast("Z")


def test_unknown_zone_and_empty_view() -> None:
    view: CarbonView = FixedView()
    assert view.reading("DE") is None
    assert view.mean_intensity("DE", T0, T0 + HOUR) is None
    assert view.forecast("DE") is None
    fixed = FixedView({"DE": 380.0}, source="policy", age_s=60.0)
    reading = fixed.reading("DE", "marginal")
    assert reading is not None
    assert (reading.g_per_kwh, reading.source, reading.age_s) == (380.0, "policy", 60.0)
    assert fixed.mean_intensity("DE", T0, T0 + HOUR) == reading  # no forecast: the latest
    assert fixed.forecast("DE") is None


def test_of_forecasts_reads_the_first_value_as_latest() -> None:
    view = FixedView.of_forecasts({"A": [310.0, 118.0], "B": []}, start_s=T0, source="bench")
    reading = view.reading("A")
    assert reading is not None and (reading.g_per_kwh, reading.source) == (310.0, "bench")
    assert view.reading("B") is None
    series = view.forecast("A")
    assert series is not None
    assert series.starts == (T0, T0 + HOUR) and series.ends == (T0 + HOUR, T0 + 2 * HOUR)
    assert series.values == (310.0, 118.0) and series.source == "bench"
