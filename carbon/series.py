"""Hourly carbon-intensity series from CSV files, and a CarbonView over them at a simulated time.

``load_zone_year`` reads ``electricitymaps_portal/<ZONE>/<ZONE>_<YEAR>_hourly*.csv`` from the
data directory (LCA column by default, ``direct`` selectable). :class:`SeriesView` answers the
:class:`~carbon.types.CarbonView` questions at a given ``now_s``: latest = the interval containing
now, forecast = the true future up to the horizon (a perfect forecast), optionally with Gaussian
error whose sigma is a fraction of the zone's mean (the Let's Wait Awhile convention); past the
horizon a window mean uses the zone's trailing mean (the ``trailing_s`` before the interval that
holds now: completed intervals only, no look-ahead). The placement simulator and the
temporal-shift planner use it; the ``replay`` provider serves the same series live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from carbon.datadir import data_dir
from carbon.longrun import TRAILING_S
from carbon.types import Reading, SignalKind, ZoneSeries
from carbon.window import FloatArray, IntervalSeries

Factor = Literal["lca", "direct"]
PORTAL_DIR = ("carbon", "electricitymaps_portal")


class SeriesError(ValueError):
    """A series file is missing or malformed (message names the file and the fix)."""


@dataclass(frozen=True, slots=True, eq=False)
class HourlySeries:
    """A regular series: interval starts (epoch s), one step, g/kWh values."""

    zone: str
    starts: FloatArray
    values: FloatArray
    step_s: float
    source: str
    filled: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ends(self) -> FloatArray:
        """Interval ends (epoch s)."""
        return self.starts + self.step_s

    def mean(self) -> float:
        """Mean over the whole series."""
        return float(self.values.mean())

    def shifted(self, offset_s: float) -> HourlySeries:
        """The same values with every timestamp moved by ``offset_s``."""
        return HourlySeries(
            self.zone,
            self.starts + offset_s,
            self.values,
            self.step_s,
            self.source,
            self.filled,
            dict(self.extra),
        )


def portal_root(root: Path | None = None) -> Path:
    """``<data>/carbon/electricitymaps_portal`` (raises SeriesError when no data dir)."""
    if root is not None:
        return root
    base = data_dir()
    if base is None:
        raise SeriesError(
            "no data directory: set LOWCARB_DATA to the folder that holds "
            "carbon/electricitymaps_portal"
        )
    return base.joinpath(*PORTAL_DIR)


def _zone_folder(root: Path, zone: str) -> Path:
    direct = root / zone
    if direct.is_dir():
        return direct
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.split("-")[0] == zone or folder.name == f"{zone}-LU":
            return folder
    known = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise SeriesError(f"no series folder for zone {zone!r} under {root}; known: {known}")


def find_file(zone: str, year: int, root: Path | None = None) -> Path:
    """Path of the zone/year hourly CSV under the portal root."""
    folder = _zone_folder(portal_root(root), zone)
    matches = _year_files(folder, year)
    if not matches:
        years = sorted({p.name.split("_")[1] for p in folder.glob("*_hourly*.csv")})
        have = ",".join(zones_with_year(year, folder.parent)) or "none"
        raise SeriesError(
            f"no {year} series for zone {zone!r} in {folder}; available years: {years}; "
            f"zones with a {year} series: {have}"
        )
    return matches[0]


def zones_with_year(year: int, root: Path | None = None) -> list[str]:
    """The zone folders under the portal root that hold a ``year`` hourly CSV (sorted)."""
    base = portal_root(root)
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if d.is_dir() and _year_files(d, year))


def _year_files(folder: Path, year: int) -> list[Path]:
    """The zone folder's hourly CSVs for ``year`` (``<ZONE>_<YEAR>_hourly*.csv``), sorted."""
    return sorted(folder.glob(f"{folder.name}_{year}_hourly*.csv"))


@cache
def _load_csv_cached(path: str, factor: Factor, zone: str | None) -> HourlySeries:
    return _load_csv(Path(path), factor, zone)


def load_csv(path: Path, factor: Factor = "lca", zone: str | None = None) -> HourlySeries:
    """Read an Electricity Maps portal CSV (cached per path/factor)."""
    return _load_csv_cached(str(path), factor, zone)


def _load_csv(path: Path, factor: Factor, zone: str | None) -> HourlySeries:
    # pandas (and the pyarrow it loads) only when a file is read: validating a policy or building
    # the replay provider must not pay for them
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SeriesError(f"{path}: cannot read CSV: {exc}") from None
    tag = "(LCA)" if factor == "lca" else "(direct)"
    time_col = next((c for c in frame.columns if c.startswith("Datetime")), None)
    value_col = next((c for c in frame.columns if "Carbon Intensity" in c and tag in c), None)
    if time_col is None or value_col is None:
        raise SeriesError(
            f"{path}: expected Electricity Maps portal columns 'Datetime (UTC)' and "
            f"'Carbon Intensity gCO2eq/kWh {tag}'; found {list(frame.columns)[:6]}"
        )
    raw = frame[time_col].astype(str)
    if raw.str.match(r"^\d{2}/\d{2}/\d{4}").all():
        times = pd.to_datetime(raw, format="%d/%m/%Y %H:%M", utc=True)
    else:
        times = pd.to_datetime(raw, format="ISO8601", utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    starts = ((times - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
    values = pd.to_numeric(frame[value_col], errors="coerce")
    filled = int(values.isna().sum())
    values = values.interpolate(limit_direction="both")
    if values.isna().any() or len(starts) < 2:
        raise SeriesError(f"{path}: column {value_col!r} has no usable values")
    order = np.argsort(starts, kind="stable")
    sorted_starts: FloatArray = np.asarray(starts[order], dtype=np.float64)
    vals: FloatArray = np.asarray(values.to_numpy(dtype=np.float64)[order], dtype=np.float64)
    step = float(np.median(np.diff(sorted_starts)))
    zone_key = zone or (
        str(frame["Zone Id"].iloc[0]) if "Zone Id" in frame.columns else path.parent.name
    )
    return HourlySeries(
        zone=zone_key,
        starts=sorted_starts,
        values=vals,
        step_s=step,
        source=f"replay:{path.name}",
        filled=filled,
        extra={"path": str(path), "factor": factor},
    )


def load_zone_year(
    zone: str, year: int, *, factor: Factor = "lca", root: Path | None = None
) -> HourlySeries:
    """Hourly series of ``zone`` for ``year`` from the data directory (cached)."""
    return load_csv(find_file(zone, year, root), factor, zone)


def _noise(zone: str, now_s: float, seed: int, n: int) -> npt.NDArray[np.float64]:
    digest = hashlib.blake2b(f"{seed}:{zone}:{int(now_s // 3600)}".encode(), digest_size=8)
    rng = np.random.default_rng(int.from_bytes(digest.digest(), "little"))
    return rng.standard_normal(n)


class SeriesView:
    """A :class:`~carbon.types.CarbonView` over in-memory series at simulated time ``now_s``."""

    def __init__(
        self,
        series_by_zone: Mapping[str, HourlySeries],
        now_s: float,
        *,
        sigma: float = 0.0,
        seed: int = 0,
        horizon_s: float = 48 * 3600.0,
        kind: SignalKind = "average",
        trailing_s: float = TRAILING_S,
        _sums: dict[str, FloatArray] | None = None,
    ) -> None:
        self.series = dict(series_by_zone)
        self.now_s = float(now_s)
        self.sigma = float(sigma)
        self.seed = seed
        self.horizon_s = horizon_s
        self.kind: SignalKind = kind
        self.trailing_s = float(trailing_s)
        self._forecasts: dict[str, tuple[FloatArray, FloatArray, FloatArray, IntervalSeries]] = {}
        # each zone's running sum of values (shared by every view of the same series: built once)
        self._sums: dict[str, FloatArray] = {} if _sums is None else _sums

    def at(self, now_s: float) -> SeriesView:
        """The same series viewed at another simulated time."""
        return SeriesView(
            self.series,
            now_s,
            sigma=self.sigma,
            seed=self.seed,
            horizon_s=self.horizon_s,
            kind=self.kind,
            trailing_s=self.trailing_s,
            _sums=self._sums,
        )

    def long_run(self, zone: str, kind: SignalKind = "average") -> float | None:
        """Mean of the zone's intervals that ended in the ``trailing_s`` before the interval
        holding now (None when none did, or the zone is unknown); never reads now or later.
        ``kind`` is ignored: the view serves one signal (``self.kind``)."""
        s = self.series.get(zone)
        if s is None:
            return None
        cum = self._sums.get(zone)
        if cum is None:
            cum = np.concatenate(([0.0], np.cumsum(s.values)))
            self._sums[zone] = cum
        # intervals [k] with k < i end at or before starts[i] <= now (i: the last start <= now)
        i = int(np.searchsorted(s.starts, self.now_s, side="right")) - 1
        lo = max(0, i - max(1, round(self.trailing_s / s.step_s)))
        if i <= lo:
            return None
        return float(cum[i] - cum[lo]) / (i - lo)

    def _index(self, s: HourlySeries) -> int:
        i = int(np.searchsorted(s.starts, self.now_s, side="right")) - 1
        return i if 0 <= i < s.starts.size and self.now_s < s.starts[i] + s.step_s else -1

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        """Value of the interval containing now (None outside the series or unknown zone)."""
        s = self.series.get(zone)
        if s is None:
            return None
        i = self._index(s)
        if i < 0:
            return None
        return Reading(
            zone=zone,
            g_per_kwh=float(s.values[i]),
            source=s.source,
            age_s=self.now_s - float(s.starts[i]),
            kind=self.kind,
        )

    def _forecast_arrays(
        self, zone: str
    ) -> tuple[FloatArray, FloatArray, FloatArray, IntervalSeries] | None:
        hit = self._forecasts.get(zone)
        if hit is not None:
            return hit
        s = self.series.get(zone)
        if s is None:
            return None
        i = max(self._index(s), int(np.searchsorted(s.starts, self.now_s, side="right")) - 1, 0)
        j = int(np.searchsorted(s.starts, self.now_s + self.horizon_s, side="left"))
        starts = s.starts[i:j]
        values = s.values[i:j].copy()
        if self.sigma > 0 and values.size > 1:
            noise = _noise(zone, self.now_s, self.seed, values.size - 1)
            values[1:] = np.clip(values[1:] + noise * self.sigma * s.mean(), 0.0, None)
        ends = starts + s.step_s
        arrays = (starts, ends, values, IntervalSeries(starts, ends, values))
        self._forecasts[zone] = arrays
        return arrays

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        """Time-weighted forecast mean over [start_s, end_s): past the horizon the zone's
        trailing mean (:meth:`long_run`, else the latest value), gaps before it the latest."""
        latest = self.reading(zone, kind)
        arrays = self._forecast_arrays(zone)
        if latest is None or arrays is None:
            return None
        ends = arrays[1]
        far = self.long_run(zone) if ends.size and end_s > float(ends[-1]) else None
        mean, covered = arrays[3].mean(start_s, end_s, latest.g_per_kwh, far)
        return Reading(
            zone=zone,
            g_per_kwh=mean,
            source=latest.source,
            age_s=latest.age_s,
            kind=latest.kind,
            estimated=bool(self.sigma > 0 and covered > 0),
        )

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        """The (possibly noisy) forecast from the current interval to the horizon."""
        arrays = self._forecast_arrays(zone)
        if arrays is None:
            return None
        starts, ends, values, _ = arrays
        return ZoneSeries(
            zone=zone,
            starts=tuple(starts.tolist()),
            ends=tuple(ends.tolist()),
            values=tuple(values.tolist()),
            source=self.series[zone].source,
        )
