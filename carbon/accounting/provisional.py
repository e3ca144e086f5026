"""Finished pods not accounted yet: how many, when they settle, and provisional estimates.

The accountant writes a pod's usage row ``settleAfter`` (policy ``accounting.settleAfter``) after
the pod ends, at its next pass. Until then a report would silently miss the pod, so reports say
how many finished pods await accounting and when they settle (:class:`Backlog`), and on request
add them as **provisional** rows: energy from the placement's power model over the recorded run,
intensity as recorded at the decision (so the whole of their location-based emissions counts as
estimated), market basis and counterfactual as the accountant computes them. A provisional row is
never written to the ledger; the final row replaces it in later reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carbon.accounting import store
from carbon.accounting.accountant import finished_runs
from carbon.accounting.emissions import AccountingError, compute_usage
from carbon.accounting.records import UsageRecord
from carbon.accounting.settings import AccountingPolicy
from carbon.duration import format_duration
from carbon.energy import PowerModel

# a pass runs every few minutes: a pod due for longer than this is not being accounted
OVERDUE_S = 3600.0
PROVISIONAL_NOTE = "provisional: power model and decision-time intensity, until accounted"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Backlog:
    """Finished, unaccounted pods of a report's period and when the accountant settles them.

    A pod settles at its end + ``settle_after_s``, at the accountant's first pass after that.
    """

    pods: int
    settle_after_s: float
    first_end: float | None = None
    last_end: float | None = None

    @property
    def first_settles_at(self) -> float | None:
        return None if self.first_end is None else self.first_end + self.settle_after_s

    @property
    def last_settles_at(self) -> float | None:
        return None if self.last_end is None else self.last_end + self.settle_after_s

    def to_json(self, included: bool) -> dict[str, Any]:
        """The ``awaiting_accounting`` field of JSON reports."""
        first, last = self.first_settles_at, self.last_settles_at
        return {
            "pods": self.pods,
            "settle_after": format_duration(self.settle_after_s),
            "first_settles_at": None if first is None else _iso(first),
            "last_settles_at": None if last is None else _iso(last),
            "included_as_provisional": included,
        }

    def headers(self) -> dict[str, str]:
        """HTTP headers of ``GET /report`` (every format, the binary ones included)."""
        out = {
            "X-Lowcarb-Awaiting-Accounting": str(self.pods),
            "X-Lowcarb-Settle-After": format_duration(self.settle_after_s),
        }
        first, last = self.first_settles_at, self.last_settles_at
        if first is not None and last is not None:
            out["X-Lowcarb-First-Settles-At"] = _iso(first)
            out["X-Lowcarb-Last-Settles-At"] = _iso(last)
        return out

    def line(self, now: float, included: bool) -> str | None:
        """One line for a terminal (``lowcarb report`` prints it on stderr), None without any."""
        first, last = self.first_settles_at, self.last_settles_at
        if self.pods == 0 or first is None or last is None:
            return None
        pods = f"{self.pods} finished pod{'s' if self.pods != 1 else ''}"
        verb = "awaits" if self.pods == 1 else "await"
        after = f"settleAfter {format_duration(self.settle_after_s)}"
        if now - first > OVERDUE_S:
            when = f"overdue since {_iso(first)} (is lowcarb serve accounting it? see its log)"
        elif last <= now:
            when = "due now: the next accounting pass settles them"
        elif first <= now:
            when = f"some due now, the last settles at {_iso(last)}"
        elif first == last:
            when = f"{'it settles' if self.pods == 1 else 'they settle'} at {_iso(first)}"
        else:
            when = f"the first settles at {_iso(first)}, the last at {_iso(last)}"
        tail = (
            "included below as provisional estimates"
            if included
            else "--include-provisional adds them as estimates"
        )
        return f"lowcarb: {pods} {verb} accounting ({after}): {when}; {tail}"


def backlog(
    conn: Any, settle_after_s: float, start: float | None = None, end: float | None = None
) -> Backlog:
    """The finished, unaccounted pods whose run started in [start, end)."""
    n, lo, hi = store.unaccounted_summary(conn, start, end)
    return Backlog(pods=n, settle_after_s=settle_after_s, first_end=lo, last_end=hi)


def estimate(
    conn: Any,
    *,
    power: PowerModel,
    policy: AccountingPolicy,
    now: float,
    start: float | None = None,
    end: float | None = None,
) -> list[UsageRecord]:
    """Provisional usage rows of the finished, unaccounted pods whose run started in [start, end).

    Pods without a decision-time intensity cannot be estimated and are left out (the backlog
    still counts them).
    """
    out = []
    for run in finished_runs(conn, store.unaccounted(conn, start, end)):
        note = PROVISIONAL_NOTE if run.note is None else f"{run.note}; {PROVISIONAL_NOTE}"
        try:
            out.append(
                compute_usage(
                    run.placement,
                    run.start,
                    run.end,
                    [],  # no history yet: the intensity recorded at the decision, all estimated
                    power=power,
                    policy=policy,
                    gate=run.gate,
                    now=now,
                    note=note,
                )
            )
        except AccountingError:
            continue
    return out
