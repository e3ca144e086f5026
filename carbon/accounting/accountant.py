"""The accountant: turns every finished, settled pod of a ledger into its usage row.

A background task of ``lowcarb serve`` (:meth:`Accountant.run`, every few minutes) and a step of
``lowcarb simulate --ledger``. Each pass loads the pods that ended at least ``settleAfter`` ago
and have no usage row yet (:mod:`carbon.accounting.store`), fetches each zone's intensity history
once along the carbon fallback chain, reads measured energy from Prometheus when configured
(:mod:`carbon.accounting.prometheus`), computes the row (:mod:`carbon.accounting.emissions`) and
appends it. Rows are final once written and keyed by pod, so a re-run or a second replica never
accounts a pod twice; each row this process writes is counted in :mod:`carbon.accounting.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx

from carbon.accounting import metrics, store
from carbon.accounting.emissions import AccountingError, compute_usage
from carbon.accounting.ledger import Ledger, LedgerTarget, open_reader
from carbon.accounting.prometheus import PrometheusMeter
from carbon.accounting.records import GateRecord, PlacementRecord, UsageRecord
from carbon.accounting.settings import AccountingPolicy
from carbon.clock import Clock, wall
from carbon.energy import PowerModel
from carbon.types import IntensityPoint

log = logging.getLogger(__name__)


class IntensityHistory(Protocol):
    """What accounting needs from a carbon provider: past intensity of a zone."""

    async def history(self, zone: str, start: datetime, end: datetime) -> Sequence[IntensityPoint]:
        """Points covering [start, end) (hourly or finer), oldest first."""
        ...


class ChainHistory:
    """History along the carbon fallback chain: the first provider that answers with points.

    ``providers`` is called on every lookup, so a policy reload that rebuilds the providers is
    followed, e.g. ``ChainHistory(lambda: [cache.providers()[n] for n in
    cache.config.fallback])``. Raises the last error when no provider has history.
    """

    def __init__(self, providers: Callable[[], Sequence[IntensityHistory]]) -> None:
        self._providers = providers

    async def history(self, zone: str, start: datetime, end: datetime) -> Sequence[IntensityPoint]:
        last: Exception | None = None
        for provider in self._providers():
            try:
                points = await provider.history(zone, start, end)
            except Exception as exc:  # next in the chain, as the cache does for latest values
                last = exc
                continue
            if points:
                return points
        if last is not None:
            raise last
        return []


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A finished pod run to account: its placement, run times, gate hold and a note."""

    placement: PlacementRecord
    start: float
    end: float
    gate: GateRecord | None
    note: str | None


def finished_runs(
    conn: object, rows: Sequence[tuple[str, float | None, float]]
) -> list[FinishedRun]:
    """The runs of ``(uid, start or None, end)`` rows from :mod:`store`, with their records.

    Without a start-of-running event the decision time stands in for the start (noted).
    """
    if not rows:
        return []
    uids = {r[0] for r in rows}
    placements = {p.uid: p for p in store.read_records(conn, PlacementRecord, uids)}
    gates = {g.uid: g for g in store.read_records(conn, GateRecord, uids)}
    out = []
    for uid, start, end in rows:
        pl = placements[uid]
        note = None
        if start is None:
            start, note = pl.at, "no start-of-running event; decision time used as start"
        out.append(FinishedRun(pl, float(start), float(end), gates.get(uid), note))
    return out


def _load_pending(
    target: LedgerTarget, limit: int, cutoff: float, skip: Sequence[str]
) -> list[FinishedRun]:
    conn = open_reader(target)
    try:
        return finished_runs(conn, store.pending(conn, cutoff, skip, limit))
    finally:
        conn.close()


class Accountant:
    """Accounts every finished, not yet accounted pod of a ledger; safe to re-run (idempotent).

    Runs on the service's event loop: ledger reads go to a worker thread, writes through the
    ledger's writer thread, history and Prometheus calls are async.
    """

    def __init__(
        self,
        ledger: Ledger,
        history: IntensityHistory | None,
        *,
        power: PowerModel | None = None,
        policy: AccountingPolicy | None = None,
        meter: PrometheusMeter | None = None,
        clock: Clock = wall,
        zones: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """``zones``: the grid zones pods may be placed in (the serving process: its nodes'),
        whose emissions series are created at 0 around each pass (:func:`metrics.expect`)."""
        self.ledger = ledger
        self.zones = zones
        self.clock = clock
        self.history = history
        self.power = power or PowerModel()
        self.policy = policy or AccountingPolicy()
        if meter is None and self.policy.prometheus is not None:
            meter = PrometheusMeter(self.policy.prometheus)
        self.meter = meter
        # pods that could not be accounted (no intensity at all): skipped until restart so they
        # never crowd out the others within ``limit``
        self.unaccountable: set[str] = set()

    async def account_pending(self, limit: int = 10_000, settle_s: float = 0.0) -> int:
        """Account up to ``limit`` finished pods; returns how many new usage rows were written.

        Only runs that ended at least ``settle_s`` ago are taken (the service passes the policy's
        ``settleAfter``, so energy metrics have been scraped); rows are final once written.
        """
        self._expect_zones()
        cutoff = self.clock() - settle_s
        skip = sorted(self.unaccountable)
        pending = await asyncio.to_thread(_load_pending, self.ledger.path, limit, cutoff, skip)
        by_zone: dict[str, list[FinishedRun]] = {}
        for item in pending:
            by_zone.setdefault(item.placement.zone or "", []).append(item)
        written = 0
        for zone, items in by_zone.items():
            points, problem = await self._history(zone, items)
            for item in items:
                record = await self._account_one(item, points, problem)
                if record is None:
                    self.unaccountable.add(item.placement.uid)
                elif await self.ledger.append_async(record):
                    metrics.count_usage(record)
                    written += 1
        self._expect_zones()  # zones seen meanwhile (the cluster sync) exist before the next pass
        return written

    def _expect_zones(self) -> None:
        if self.zones is not None:
            metrics.expect(self.zones())

    async def run(self, interval_s: float = 300.0, settle_s: float | None = None) -> None:
        """Account periodically until cancelled (a background task of ``lowcarb serve``).

        ``settle_s`` None: the policy's ``accounting.settleAfter``.
        """
        settle = self.policy.settle_after if settle_s is None else settle_s
        while True:
            try:
                written = await self.account_pending(settle_s=settle)
                if written:
                    log.info("accounted %d finished pods", written)
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("accounting pass failed")
            await asyncio.sleep(interval_s)

    async def _history(
        self, zone: str, items: list[FinishedRun]
    ) -> tuple[list[IntensityPoint], str | None]:
        if not zone:
            return [], "node has no grid zone; decision-time intensity used"
        if self.history is None:
            return [], "no intensity history configured; decision-time intensity used"
        lo = min(i.start for i in items)
        hi = max(i.end for i in items)
        try:
            pts = await self.history.history(
                zone, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
            )
        except Exception as exc:  # provider down: decision-time intensity, marked estimated
            log.warning("intensity history for %s unavailable: %s", zone, exc)
            return [], f"intensity history unavailable ({exc}); decision-time intensity used"
        return sorted(pts, key=lambda p: p.start), None

    async def _account_one(
        self, item: FinishedRun, points: list[IntensityPoint], problem: str | None
    ) -> UsageRecord | None:
        note = _join(item.note, problem) if problem else item.note
        measured = None
        if self.meter is not None:
            pl = item.placement
            try:
                measured = await self.meter.energy(pl.namespace, pl.name, item.start, item.end)
                if measured is None:
                    note = _join(note, "prometheus had no energy series; power model used")
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
                note = _join(note, f"prometheus query failed ({exc}); power model used")
        try:
            return compute_usage(
                item.placement,
                item.start,
                item.end,
                points,
                power=self.power,
                policy=self.policy,
                measured=measured,
                gate=item.gate,
                now=self.clock(),
                note=note,
            )
        except AccountingError as exc:
            log.warning("pod %s not accounted: %s", item.placement.uid, exc)
            return None


def _join(a: str | None, b: str) -> str:
    return b if not a else f"{a}; {b}"
