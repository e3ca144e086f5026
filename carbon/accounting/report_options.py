"""Report options shared by ``lowcarb report`` and ``GET /report``, validated once.

Every mistake raises :class:`ReportError` naming the option and the fix. Besides what to report
(period, grouping, format, SCI unit), the options carry what reports need from the policy: the
settle delay (``accounting.settleAfter``), which dates when pods awaiting accounting settle, and
the power model and accounting section that provisional estimates use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from carbon.accounting.settings import DEFAULT_SETTLE_AFTER, AccountingPolicy
from carbon.clock import wall
from carbon.duration import parse_duration
from carbon.energy import PowerModel

GROUP_KEYS: tuple[str, ...] = ("pod", "namespace", "class", "zone", "node", "day", "job")
FORMATS: tuple[str, ...] = ("csv", "parquet", "json", "sci", "png")
SCI_UNITS: tuple[str, ...] = ("job", "pod", "gpu-hour")
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "sci": "application/json",
    "png": "image/png",
}


class ReportError(ValueError):
    """Bad report options (names the option and the fix)."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """Validated report options shared by the CLI and ``GET /report``.

    ``include_provisional`` adds finished pods the accountant has not settled yet as rows flagged
    ``provisional`` (estimated with ``power`` and ``accounting``, defaults when None).
    """

    start: float | None = None  # epoch seconds, inclusive (run start)
    end: float | None = None  # epoch seconds, exclusive
    group_by: tuple[str, ...] = ("namespace",)
    format: str = "csv"
    sci_unit: str = "job"
    include_provisional: bool = False
    settle_after_s: float = field(default_factory=lambda: parse_duration(DEFAULT_SETTLE_AFTER))
    power: PowerModel | None = None
    accounting: AccountingPolicy | None = None

    def __post_init__(self) -> None:
        if not self.group_by:
            raise ReportError("--group-by: give at least one of " + "|".join(GROUP_KEYS))
        for key in self.group_by:
            if key not in GROUP_KEYS:
                raise ReportError(
                    f"--group-by: unknown key {key!r}; use one or more of "
                    f"{'|'.join(GROUP_KEYS)} (comma-separated)"
                )
        if len(set(self.group_by)) != len(self.group_by):
            raise ReportError("--group-by: a key is listed twice; list each once")
        if self.format not in FORMATS:
            raise ReportError(f"--format: unknown format {self.format!r}; use {'|'.join(FORMATS)}")
        if self.sci_unit not in SCI_UNITS:
            raise ReportError(
                f"--sci-unit: unknown unit {self.sci_unit!r}; use {'|'.join(SCI_UNITS)}"
            )
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ReportError("--to must be later than --from")


def parse_time(value: str, option: str) -> float:
    """Epoch seconds from an ISO 8601 date or date-time (naive means UTC), or ``now``."""
    text = value.strip()
    if text.lower() == "now":
        return wall()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{option}: {value!r} is not a date; write e.g. 2026-11-01 or 2026-11-01T12:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_group_by(value: str) -> tuple[str, ...]:
    """``"zone,day"`` -> ``("zone", "day")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())
