"""The energy cost component: kWh over the run times a per-zone electricity price.

The policy's ``prices.energy`` (:class:`EnergyPrices`, pydantic, validated once per load) gives
each grid zone a flat price in USD per kWh or a time-of-use ``schedule`` of daily windows in the
zone's ``timezone``; zones not listed cost ``default`` (0 unless set). :func:`compile_energy`
turns it into an :class:`EnergyTable` of plain floats and numpy arrays, which the cost model
(:func:`scheduler.scoring.price`) reads per cycle: :meth:`EnergyTable.mean_price` is the price
averaged over each row's run window ``[now, now + run]``, vectorised per zone (a cumulative
integral of the daily schedule, two ``np.interp`` calls per zone, no pydantic, no I/O).

A schedule's windows must cover every minute of the day exactly once (a window may wrap past
midnight, e.g. ``from: "21:00", to: "07:00"``); a gap or an overlap is an error naming the
entries. Times are ``"HH:MM"`` (``"24:00"`` ends the day); YAML 1.1 reads an unquoted ``16:00``
as the base-60 number 960, which is taken as minutes after midnight, i.e. the same time. A run
that crosses a daylight-saving change uses the UTC offset at its start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from carbon.checks import Loc, Problem, raise_problems, separate

DAY_S = 86400.0
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
TIME_PATTERN = r"^([01]?\d|2[0-3]):[0-5]\d$|^24:00$"


def _time(value: object) -> object:
    """``"07:30"`` stays; YAML 1.1's base-60 reading of an unquoted ``16:00`` (960) -> "16:00"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


def minutes(text: str) -> int:
    """``"16:30"`` -> 990 (``"24:00"`` -> 1440)."""
    match = _HHMM.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day; write 'HH:MM', e.g. '07:00'")
    hours, mins = int(match.group(1)), int(match.group(2))
    if mins > 59 or hours > 24 or (hours == 24 and mins):
        raise ValueError(f"{text!r} is not a time of day; write 'HH:MM' from '00:00' to '24:00'")
    return hours * 60 + mins


TimeOfDay = Annotated[
    str,
    BeforeValidator(_time),
    Field(pattern=TIME_PATTERN),
    WithJsonSchema({"type": "string", "pattern": TIME_PATTERN}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TouWindow(_Strict):
    """One daily window of a time-of-use tariff: ``[from, to)`` local time, its price."""

    start: TimeOfDay = Field(alias="from", description="Start, local time 'HH:MM'")
    end: TimeOfDay = Field(alias="to", description="End, local time 'HH:MM' ('24:00' or past "
                           "midnight: wraps)")  # fmt: skip
    price: float = Field(ge=0.0, description="USD per kWh in this window")

    def span(self) -> str:
        return f"{self.start}-{self.end}"


def schedule_problems(windows: object) -> list[Problem]:
    """Gaps and overlaps of a schedule (list of {from, to, price}), each naming its entries."""
    if not isinstance(windows, list):
        return []
    # (start minute, end minute, index) pieces of [0, 1440); a wrapping window gives two
    pieces: list[tuple[int, int, int]] = []
    for i, w in enumerate(windows):
        if not isinstance(w, dict):
            return []
        raw_from, raw_to = _time(w.get("from", w.get("start"))), _time(w.get("to", w.get("end")))
        try:
            a, b = minutes(str(raw_from)), minutes(str(raw_to))
        except ValueError:
            return []  # field validation reports the bad time
        if a == b:
            return [((i,), f"window {raw_from}-{raw_to} is empty; give a later 'to'")]
        if a < b:
            pieces.append((a, b, i))
        else:  # wraps past midnight
            pieces += [(a, 24 * 60, i), (0, b, i)] if b else [(a, 24 * 60, i)]
    if not pieces:
        return [((), "the schedule has no windows; give at least one {from, to, price}")]
    pieces.sort()
    out: list[Problem] = []
    at, last = 0, None
    for a, b, i in pieces:
        if a > at:
            after = f" (after entry {last})" if last is not None else ""
            out.append(((i,), f"no price for {_hhmm(at)}-{_hhmm(a)}{after}: windows must cover "
                        "the whole day"))  # fmt: skip
        elif a < at and last is not None:
            out.append(((i,), f"{_hhmm(a)}-{_hhmm(min(at, b))} is priced by entries {last} "
                        f"and {i}: windows must not overlap"))  # fmt: skip
        if b > at:
            at, last = b, i
    if at < 24 * 60:
        gap = f"no price for {_hhmm(at)}-24:00: windows must cover the whole day"
        out.append(((last if last is not None else 0,), gap))
    return out


def _hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


class Schedule(_Strict):
    """A time-of-use tariff: daily windows in the zone's local time."""

    schedule: list[TouWindow] = Field(
        min_length=1, description="Daily windows covering 00:00-24:00 exactly once"
    )
    timezone: str = Field(
        default="UTC", description="IANA time zone of the windows, e.g. 'America/Los_Angeles'"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; give an IANA name such as 'Europe/Berlin' or "
                "'America/Los_Angeles'"
            ) from None
        return value

    @model_validator(mode="after")
    def _cover(self, info: ValidationInfo) -> Schedule:
        if not separate(info):
            data = [w.model_dump(by_alias=True) for w in self.schedule]
            raise_problems(schedule_problems(data), ("schedule",))
        return self


Price = Annotated[float, Field(ge=0.0)]
#: union tags of a zone's price (validation-error steps the policy messages leave out)
UNION_TAGS = ("flat-price", "tou-schedule")


def _zone_kind(value: object) -> str:
    return UNION_TAGS[1] if isinstance(value, dict | Schedule) else UNION_TAGS[0]


ZonePrice = Annotated[
    Annotated[Price, Tag(UNION_TAGS[0])] | Annotated[Schedule, Tag(UNION_TAGS[1])],
    Discriminator(_zone_kind),
]


class EnergyPrices(_Strict):
    """Electricity prices per grid zone, USD per kWh (flat, or a time-of-use schedule)."""

    default: Price = Field(default=0.0, description="USD per kWh for zones not listed")
    zones: dict[str, ZonePrice] = Field(
        default_factory=dict,
        description="Grid zone -> USD per kWh, or {schedule: [{from, to, price}], timezone}",
    )


def energy_problems(energy: object, base: Loc) -> list[Problem]:
    """Schedule gaps and overlaps of a ``prices.energy`` section (raw data), at their entries."""
    zones = energy.get("zones") if isinstance(energy, dict) else None
    out: list[Problem] = []
    for zone, value in zones.items() if isinstance(zones, dict) else ():
        if isinstance(value, dict) and "schedule" in value:
            at = (*base, "zones", zone, "schedule")
            out += [((*at, *loc), msg) for loc, msg in schedule_problems(value["schedule"])]
    return out


# --- the compiled table (hot path) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tou:
    """One zone's schedule as a cumulative integral over the local day (seconds, USD/kWh x s)."""

    bounds: np.ndarray  # [k + 1] seconds of the local day, 0 .. 86400
    cum: np.ndarray  # [k + 1] integral of the price from 0 to each bound
    prices: np.ndarray  # [k] price of each segment
    tz: ZoneInfo

    def price_at(self, local_s: float) -> float:
        second = local_s - np.floor(local_s / DAY_S) * DAY_S
        k = int(np.searchsorted(self.bounds, second, side="right")) - 1
        return float(self.prices[min(max(k, 0), len(self.prices) - 1)])

    def integral(self, local_s: np.ndarray) -> np.ndarray:
        days = np.floor(local_s / DAY_S)
        return days * self.cum[-1] + np.interp(local_s - days * DAY_S, self.bounds, self.cum)


@dataclass(frozen=True, slots=True)
class EnergyTable:
    """``prices.energy`` as plain data: flat prices and schedules by zone name."""

    default: float = 0.0
    flat: dict[str, float] = field(default_factory=dict)
    tou: dict[str, _Tou] = field(default_factory=dict)

    def mean_price(
        self, zones: Sequence[str], zone: np.ndarray, start_s: float, run_s: np.ndarray
    ) -> np.ndarray:
        """USD per kWh averaged over ``[start_s, start_s + run_s]`` per row; ``zone`` indexes
        ``zones`` (-1: no zone, priced at ``default``)."""
        zone = np.asarray(zone)
        run = np.asarray(run_s, dtype=np.float64)
        per_zone = np.array([self.flat.get(z, self.default) for z in zones] + [self.default])
        idx = np.where(zone >= 0, zone, len(zones))
        out = per_zone[idx].astype(np.float64)
        for k, name in enumerate(zones):
            tou = self.tou.get(name)
            if tou is None:
                continue
            rows = np.flatnonzero(zone == k)
            if rows.size == 0:
                continue
            offset = datetime.fromtimestamp(start_s, UTC).astimezone(tou.tz).utcoffset()
            local0 = start_s + (offset.total_seconds() if offset is not None else 0.0)
            r = np.maximum(run[rows], 0.0)
            ends = tou.integral(local0 + r)
            begin = float(tou.integral(np.array([local0]))[0])
            now_price = tou.price_at(local0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (ends - begin) / r
            out[rows] = np.where(r > 0, mean, now_price)
        return out


def _tou(s: Schedule) -> _Tou:
    pieces: list[tuple[float, float, float]] = []
    for w in s.schedule:
        a, b = minutes(w.start) * 60.0, minutes(w.end) * 60.0
        if a < b:
            pieces.append((a, b, w.price))
        else:
            pieces.append((a, DAY_S, w.price))
            if b > 0:
                pieces.append((0.0, b, w.price))
    pieces.sort()
    bounds = [0.0] + [b for _, b, _ in pieces]
    cum = np.concatenate(([0.0], np.cumsum([(b - a) * p for a, b, p in pieces])))
    prices = np.array([p for _, _, p in pieces], dtype=np.float64)
    return _Tou(np.asarray(bounds), cum, prices, ZoneInfo(s.timezone))


def compile_energy(prices: EnergyPrices | None) -> EnergyTable | None:
    """The hot-path table of ``prices`` (None when the policy prices no energy)."""
    if prices is None:
        return None
    flat = {z: float(v) for z, v in prices.zones.items() if not isinstance(v, Schedule)}
    tou = {z: _tou(v) for z, v in prices.zones.items() if isinstance(v, Schedule)}
    return EnergyTable(float(prices.default), flat, tou)
