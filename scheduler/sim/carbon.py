"""Carbon series of a simulation: zone/year files aligned to the trace, exact integrals over runs.

Series come from :mod:`carbon.series` (Electricity Maps portal files, ``<ZONE>/<ZONE>_<YEAR>_
hourly.csv``) or, for the single-zone "Let's Wait Awhile" setting, from ``letswaitawhile_2020/
<x>_ci.csv`` (sub-hourly, naive timestamps read as UTC, averaged per hour). A simulation longer
than its series wraps around (the series is repeated end to end), so any start date works.
:class:`Integrals` answers "mean intensity of zone z over [a, b)" exactly from a cumulative sum,
vectorised over pods; it agrees with :func:`carbon.window.window_mean` and the ledger's accounting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from carbon.datadir import data_dir
from carbon.series import TRAILING_S, HourlySeries, SeriesError, load_zone_year
from carbon.types import IntensityPoint

FloatArray = npt.NDArray[np.float64]
LWA_DIR = ("carbon", "letswaitawhile_2020")
LWA_FILES = {"DE": "ger_ci.csv", "GB": "gb_ci.csv", "FR": "fr_ci.csv"}


def parse_start(text: str) -> float:
    """Epoch seconds of an ISO date or date-time (naive means UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SeriesError(
            f"--start: {text!r} is not a date; write e.g. 2022-01-01 or 2022-03-01T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def year_start(year: int) -> float:
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


def load_lwa(zone: str, root: Path | None = None) -> HourlySeries:
    """A Let's Wait Awhile 2020 series (DE, GB or FR), averaged to hourly values."""
    key = zone.upper()
    if key not in LWA_FILES:
        raise SeriesError(f"--lwa {zone}: use one of {', '.join(LWA_FILES)}")
    if root is None:
        base = data_dir()
        if base is None:
            raise SeriesError("no data directory: set LOWCARB_DATA to the shared data folder")
        root = base.joinpath(*LWA_DIR)
    path = root / LWA_FILES[key]
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise SeriesError(f"{path}: cannot read CSV: {exc}") from None
    if list(frame.columns[:2]) != ["Time", "Carbon Intensity"]:
        raise SeriesError(f"{path}: expected columns Time, Carbon Intensity")
    times = pd.to_datetime(frame["Time"], utc=True)
    hourly = (
        pd.Series(frame["Carbon Intensity"].to_numpy(np.float64), index=times)
        .resample("1h")
        .mean()
        .interpolate(limit_direction="both")
    )
    starts = _seconds(pd.DatetimeIndex(hourly.index))
    return HourlySeries(
        zone=key,
        starts=starts,
        values=hourly.to_numpy(np.float64),
        step_s=3600.0,
        source=f"lwa:{path.name}",
    )


def _seconds(index: pd.DatetimeIndex) -> FloatArray:
    """Epoch seconds of a tz-aware index."""
    return np.asarray(
        index.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64) / 1e9,
        dtype=np.float64,
    )


def covering(s: HourlySeries, lo: float, hi: float) -> HourlySeries:
    """``s`` repeated end to end (whole periods) so that it covers [lo, hi]."""
    period = s.starts.size * s.step_s
    first, last = float(s.starts[0]), float(s.starts[-1] + s.step_s)
    before = int(np.ceil(max(first - lo, 0.0) / period))
    after = int(np.ceil(max(hi - last, 0.0) / period))
    if before == 0 and after == 0:
        return s
    shifts = np.arange(-before, after + 1) * period
    starts = np.concatenate([s.starts + k for k in shifts])
    values = np.tile(s.values, shifts.size)
    return HourlySeries(s.zone, starts, values, s.step_s, s.source, s.filled, dict(s.extra))


def with_history(s: HourlySeries, first: float, before: HourlySeries | None) -> HourlySeries:
    """``s`` with the values it holds before ``first`` (its own year's start) replaced by the
    previous year's series ``before`` where that has the same hour (the real history)."""
    if before is None:
        return s
    head = np.flatnonzero(s.starts < first)
    idx = np.searchsorted(before.starts, s.starts[head])
    ok = idx < before.starts.size
    ok[ok] = before.starts[idx[ok]] == s.starts[head[ok]]
    if not ok.any():
        return s
    values = s.values.copy()
    values[head[ok]] = before.values[idx[ok]]
    return HourlySeries(s.zone, s.starts, values, s.step_s, s.source, s.filled, dict(s.extra))


def load_series(
    zones: Sequence[str], year: int, lo: float, hi: float, *, lwa: bool = False
) -> dict[str, HourlySeries]:
    """Each zone's series for ``year`` (or its Let's Wait Awhile series), covering [lo, hi] and
    the ``TRAILING_S`` before ``lo`` that the view's long-run mean reads. Before the year's first
    hour that history is the previous year's series where the data folder has it, else (2021:
    no 2020 files) the year's own end, wrapped around."""
    out: dict[str, HourlySeries] = {}
    for zone in zones:
        s = load_lwa(zone) if lwa else load_zone_year(zone, year)
        s = HourlySeries(zone, s.starts, s.values, s.step_s, s.source, s.filled, dict(s.extra))
        first = float(s.starts[0])
        s = covering(s, lo - TRAILING_S - 2 * 86400, hi + 3 * 86400)
        if not lwa and lo - TRAILING_S < first:
            with contextlib.suppress(SeriesError):  # no previous year: this one's end, wrapped
                s = with_history(s, first, load_zone_year(zone, year - 1))
        out[zone] = s
    return out


@dataclass(frozen=True, slots=True)
class Integrals:
    """Cumulative integrals (g/kWh x s) of each zone's series at its interval boundaries."""

    zones: tuple[str, ...]
    bounds: tuple[FloatArray, ...]  # interval boundaries (epoch s), len n+1
    cum: tuple[FloatArray, ...]  # integral from the first boundary, len n+1
    series: tuple[HourlySeries, ...]

    @classmethod
    def of(cls, series: Mapping[str, HourlySeries]) -> Integrals:
        zones = tuple(series)
        bounds, cum = [], []
        for z in zones:
            s = series[z]
            b = np.append(s.starts, s.starts[-1] + s.step_s)
            bounds.append(b)
            cum.append(np.concatenate(([0.0], np.cumsum(s.values * np.diff(b)))))
        return cls(zones, tuple(bounds), tuple(cum), tuple(series[z] for z in zones))

    def integral(self, zone: int, t: FloatArray) -> FloatArray:
        """Integral of intensity from the series start to each ``t`` (g/kWh x s)."""
        return np.interp(t, self.bounds[zone], self.cum[zone])

    def mean(self, zone: int, start: FloatArray, end: FloatArray) -> FloatArray:
        """Mean intensity over [start, end) per element (the value at start for empty runs)."""
        start = np.asarray(start, dtype=np.float64)
        end = np.asarray(end, dtype=np.float64)
        width = end - start
        s = self.series[zone]
        idx = np.clip(np.searchsorted(s.starts, start, side="right") - 1, 0, s.values.size - 1)
        point = s.values[idx]
        safe = np.where(width > 0, width, 1.0)
        avg = (self.integral(zone, end) - self.integral(zone, start)) / safe
        return np.asarray(np.where(width > 0, avg, point), dtype=np.float64)

    def hourly(self, zone: int, edges: FloatArray) -> FloatArray:
        """Mean intensity in each bin between consecutive ``edges``."""
        return self.mean(zone, edges[:-1], edges[1:])


class SeriesHistory:
    """The recorded series as a carbon history source (what accounting integrates)."""

    def __init__(self, series: Mapping[str, HourlySeries]) -> None:
        self.series = dict(series)

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        s = self.series.get(zone)
        if s is None:
            return []
        lo, hi = start.timestamp(), end.timestamp()
        i = max(int(np.searchsorted(s.starts, lo, side="right")) - 1, 0)
        j = int(np.searchsorted(s.starts, hi, side="left"))
        return [
            IntensityPoint(
                zone,
                datetime.fromtimestamp(float(t), UTC),
                datetime.fromtimestamp(float(t) + s.step_s, UTC),
                float(v),
            )
            for t, v in zip(s.starts[i:j].tolist(), s.values[i:j].tolist(), strict=True)
        ]
