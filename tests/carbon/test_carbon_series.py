"""Hourly series loading, SeriesView (perfect or noisy forecast) and window means."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from carbon.datadir import data_dir
from carbon.series import HourlySeries, SeriesError, SeriesView, load_zone_year, zones_with_year
from carbon.window import window_mean

needs_data = pytest.mark.skipif(
    data_dir() is None, reason="shared data dir absent (set LOWCARB_DATA to ../shared/data)"
)
T0 = datetime(2023, 6, 14, tzinfo=UTC).timestamp()


def synthetic(values: list[float]) -> HourlySeries:
    starts = T0 + 3600.0 * np.arange(len(values), dtype=np.float64)
    return HourlySeries("ZZ", starts, np.asarray(values, dtype=np.float64), 3600.0, "test")


def test_window_mean_weights_partial_hours_and_fills_gaps() -> None:
    starts = np.array([0.0, 3600.0, 10800.0])
    ends = starts + 3600.0
    values = np.array([100.0, 200.0, 400.0])
    mean, covered = window_mean(starts, ends, values, 1800.0, 5400.0, fill=0.0)
    assert (mean, covered) == (150.0, 1.0)
    mean, covered = window_mean(starts, ends, values, 3600.0, 14400.0, fill=300.0)
    assert mean == pytest.approx((200 + 300 + 400) / 3) and covered == pytest.approx(2 / 3)
    assert window_mean(starts, ends, values, 4000.0, 4000.0, fill=1.0) == (200.0, 1.0)
    assert window_mean(starts, ends, values, 1e6, 2e6, fill=7.0) == (7.0, 0.0)


def test_series_view_perfect_forecast() -> None:
    view = SeriesView({"ZZ": synthetic([100, 200, 300, 400])}, T0 + 1800)
    reading = view.reading("ZZ")
    assert reading is not None and (reading.g_per_kwh, reading.age_s) == (100.0, 1800.0)
    mean = view.mean_intensity("ZZ", T0 + 1800, T0 + 3 * 3600)
    assert mean is not None and mean.g_per_kwh == pytest.approx((50 + 200 + 300) / 2.5)
    fc = view.forecast("ZZ")
    assert fc is not None and fc.values == (100.0, 200.0, 300.0, 400.0)
    assert view.reading("XX") is None and view.mean_intensity("XX", T0, T0 + 1) is None
    assert view.at(T0 + 2 * 3600).reading("ZZ").g_per_kwh == 300.0  # type: ignore[union-attr]
    assert view.at(T0 + 10 * 3600).reading("ZZ") is None


def test_series_view_noise_is_seeded_and_spares_current_hour() -> None:
    series = {"ZZ": synthetic([100.0] * 48)}
    a = SeriesView(series, T0, sigma=0.1, seed=7).forecast("ZZ")
    b = SeriesView(series, T0, sigma=0.1, seed=7).forecast("ZZ")
    c = SeriesView(series, T0, sigma=0.1, seed=8).forecast("ZZ")
    assert a is not None and b is not None and c is not None
    assert a.values == b.values and a.values != c.values
    assert a.values[0] == 100.0
    assert 2.0 < float(np.std(a.values[1:])) < 20.0  # sigma = 10 % of the 100 g mean


@needs_data
def test_load_real_series_lca_and_direct() -> None:
    de = load_zone_year("DE", 2023)
    assert de.zone == "DE" and de.values.size == 8760 and de.step_s == 3600.0
    assert de.starts[0] == datetime(2023, 1, 1, tzinfo=UTC).timestamp()
    assert de.values[0] == 185.8 and de.mean() == pytest.approx(367.0, abs=0.1)  # PROVENANCE
    direct = load_zone_year("DE", 2023, factor="direct")
    assert direct.values[0] == 140.51


@needs_data
def test_day_first_dates_in_the_fr_file() -> None:
    fr = load_zone_year("FR", 2022)
    assert fr.starts[1] - fr.starts[0] == 3600.0
    assert fr.starts[0] == datetime(2022, 1, 1, tzinfo=UTC).timestamp()
    assert fr.values[0] == 43.84 and fr.mean() == pytest.approx(89.1, abs=0.1)


@needs_data
def test_missing_zone_or_year_explains() -> None:
    with pytest.raises(SeriesError, match="available years"):
        load_zone_year("FR", 2023)
    with pytest.raises(SeriesError, match="no series folder"):
        load_zone_year("ATLANTIS", 2023)


def test_zones_with_year_lists_the_folders_holding_that_year(tmp_path: Path) -> None:
    for zone, years in {"NO": (2022, 2023), "GB": (2023,), "FR": (2022,)}.items():
        (tmp_path / zone).mkdir()
        for year in years:
            (tmp_path / zone / f"{zone}_{year}_hourly.csv").write_text("x\n")
    (tmp_path / "README.md").write_text("not a zone\n")
    assert zones_with_year(2023, tmp_path) == ["GB", "NO"]
    assert zones_with_year(2022, tmp_path) == ["FR", "NO"]
    assert zones_with_year(2024, tmp_path) == []
    assert zones_with_year(2023, tmp_path / "absent") == []


def test_a_leap_year_series_has_its_29th_of_february(tmp_path: Path) -> None:
    """2024 files have 8,784 hours; the loader keeps every one in order, 29 February included."""
    folder = tmp_path / "GB"
    folder.mkdir()
    t0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    head = (
        "Datetime (UTC),Zone Id,"
        "Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA)"
    )
    lines = [head]
    for h in range(8784):
        when = datetime.fromtimestamp(t0 + h * 3600.0, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when},GB,{h % 24},{100 + h % 24}")
    (folder / "GB_2024_hourly.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    s = load_zone_year("GB", 2024, root=tmp_path)
    assert s.values.size == 8784 and s.step_s == 3600.0
    assert s.starts[0] == t0 and np.all(np.diff(s.starts) == 3600.0)
    feb29 = datetime(2024, 2, 29, 13, tzinfo=UTC).timestamp()
    assert s.values[int((feb29 - t0) // 3600)] == 113.0
    assert s.starts[-1] == datetime(2024, 12, 31, 23, tzinfo=UTC).timestamp()
