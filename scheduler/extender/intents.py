"""Exactly one ledger row per pod lowcarb binds, across crashes, without an fsync per bind.

The bind path (``scheduler.extender.service``) is: commit a ``bind`` intent, create the Binding
(the decision annotation rides on it, so a pod is bound with lowcarb's decision or not at all),
then append the placement row without waiting for its commit. A crash can therefore leave

* an intent and no Binding: the pod is unbound, kube-scheduler retries it, nothing to record;
* a Binding and no placement row: the pod carries the decision, the ledger does not.

Two repairs close the second case, both writing the row decoded from the pod's own decision
annotation (the very record the bind would have written), its note starting with ``recovered``:

* :func:`recovered_placement` on every pod the watch shows, first time per process (every
  relist, i.e. start and resync): a bound pod whose decision names it, without a row, gets one;
* :func:`settle_intents` at start: every intent with neither a placement row nor a settlement
  is checked against the API server (one GET), which also finds pods that finished or left the
  watch while lowcarb was down. A pod bound with the decision gets its row; one gone, recreated
  or bound without a decision is marked ``settled``; an unbound one stays open (its next bind,
  or the next start, settles it).

Rows are keyed by pod uid (``INSERT OR IGNORE``), so a repair racing the bind path or another
repair can never write a second row.

:class:`GroupCommit` keeps the ledger off the critical path as far as it can: the intents of
concurrent binds share one transaction (one fsync), and each placement row rides on the next
group's transaction instead of costing one of its own (sent alone after at most ``max_delay_s``
when no bind follows). A group is sent at once when the ledger is idle; while the previous group
is still being committed it stays open, at most ``max_wait_s`` (10 ms), for more binds to join.
That wait costs a bind nothing: the single writer could not start the group's transaction before
the previous one ends anyway; the bound only caps how long a stalled disk keeps a group open. So
a bind waits for one shared commit, where it used to wait for one of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
import structlog

from carbon.accounting.ledger import (
    IntentRecord,
    Ledger,
    LedgerError,
    PlacementRecord,
    Record,
    open_intents,
    open_reader,
)
from carbon.backoff import Backoff
from scheduler import wire
from scheduler.kube.errors import ApiError, KubeError
from scheduler.names import ANN_DECISION

log = structlog.get_logger("lowcarb.intents")

RECOVERED = "recovered"


# --- group commit -------------------------------------------------------------------------------


@dataclass
class _Group:
    records: list[IntentRecord] = field(default_factory=list)
    futures: list[Future[bool]] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class GroupCommit:
    """Ledger appends grouped into shared commits (see the module docstring): bind intents,
    which a bind waits for, and rows deferred onto the next group (placements), which it does
    not."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_wait_s: float = 0.01,
        max_delay_s: float = 0.05,
        max_batch: int = 256,
    ) -> None:
        self.ledger = ledger
        self.max_wait_s = max_wait_s
        self.max_delay_s = max_delay_s
        self.max_batch = max_batch
        self.groups = 0
        self.records = 0
        self._open: _Group | None = None
        self._committing: asyncio.Future[None] | None = None  # the last group sent, until durable
        self._deferred: list[tuple[Record, Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def append(self, record: IntentRecord) -> bool:
        """Return once ``record`` is durably committed (True: new row, False: already there)."""
        group = self._open
        if group is not None:
            index = len(group.records)
            group.records.append(record)
            if len(group.records) >= self.max_batch:
                group.full.set()
            await group.sent.wait()
        else:
            group = self._open = _Group([record])
            index = 0
            try:
                await self._gather(group)
            finally:  # sent even if this bind is cancelled: the others wait on the group
                self._open = None
                group.futures = self._send(group.records)
                group.sent.set()
        # shielded: a waiter that gives up must not cancel the ledger's future of the group
        return await asyncio.shield(asyncio.wrap_future(group.futures[index]))

    def defer(self, record: Record) -> Future[bool]:
        """Queue ``record`` to ride on the next group's transaction, or to be sent on its own
        ``max_delay_s`` from now; the future resolves when it is committed."""
        proxy: Future[bool] = Future()
        self._deferred.append((record, proxy))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self.flush)
        return proxy

    def flush(self) -> None:
        """Queue the deferred rows to the ledger now (the timer, each group and shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deferred, self._deferred = self._deferred, []
        for record, proxy in deferred:
            try:
                future = self.ledger.append(record)
            except LedgerError as exc:  # closed while shutting down
                _copy(proxy, exc)
                continue
            future.add_done_callback(partial(_copy, proxy))

    def _send(self, records: list[IntentRecord]) -> list[Future[bool]]:
        """Queue the deferred rows and the group at once: the writer thread commits them in one
        transaction."""
        self.flush()
        self.groups += 1
        self.records += len(records)
        futures: list[Future[bool]] = []
        for record in records:
            try:
                futures.append(self.ledger.append(record))
            except LedgerError as exc:  # closed while shutting down
                failed: Future[bool] = Future()
                failed.set_exception(exc)
                futures.append(failed)
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()

        def done(_: Future[bool]) -> None:  # on the writer thread
            loop.call_soon_threadsafe(_resolve, committed)

        futures[-1].add_done_callback(done)
        self._committing = committed
        return futures

    async def _gather(self, group: _Group) -> None:
        """Keep the group open while the previous one is committing (at most ``max_wait_s``)."""
        busy = self._committing
        if busy is None or busy.done() or self.max_wait_s <= 0:
            return
        full: asyncio.Future[Any] = asyncio.ensure_future(group.full.wait())
        try:  # asyncio.wait never cancels what it waits for: the previous group is not touched
            await asyncio.wait(
                {busy, full}, timeout=self.max_wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            full.cancel()
            with contextlib.suppress(BaseException):
                await full


def _copy(proxy: Future[bool], source: Future[bool] | BaseException) -> None:
    """Give ``proxy`` the outcome of ``source`` (unless its waiter cancelled it)."""
    if proxy.cancelled():
        return
    with contextlib.suppress(InvalidStateError):
        if isinstance(source, BaseException):
            proxy.set_exception(source)
        elif source.cancelled():
            proxy.cancel()
        elif source.exception() is not None:
            proxy.set_exception(source.exception())
        else:
            proxy.set_result(source.result())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- recovery -----------------------------------------------------------------------------------


def recovered_placement(pod: wire.Pod, why: str) -> PlacementRecord | None:
    """The placement row a bound pod's decision annotation records, marked recovered.

    None unless the pod is bound and carries lowcarb's decision *for this pod* (uid and node
    match: an annotation copied from another pod's manifest is not a decision).
    """
    text = (pod.metadata.annotations or {}).get(ANN_DECISION)
    if not text or not pod.spec.nodeName:
        return None
    try:
        record = PlacementRecord.from_annotation(text)
    except (LedgerError, msgspec.ValidationError):
        log.warning("decision_annotation_unreadable", pod=_name(pod))
        return None
    if record.uid != pod.metadata.uid or record.node != pod.spec.nodeName:
        return None
    note = f"{RECOVERED}: {why}" + (f"; {record.note}" if record.note else "")
    return msgspec.structs.replace(record, note=note)


@dataclass
class SettleStats:
    checked: int = 0
    recovered: int = 0
    settled: int = 0
    still_open: int = 0


async def settle_intents(
    ledger: Ledger,
    get_pod: Callable[[str, str], Awaitable[wire.Pod]],
    *,
    skip: Callable[[str], bool] = lambda uid: False,
    clock: Callable[[], float],
    backoff: Backoff | None = None,
) -> SettleStats:
    """Check every open intent against the API server once (see the module docstring).

    An unreachable API server is retried with backoff until it answers (or the task is
    cancelled); ``skip`` names pods this process has bound itself meanwhile.
    """
    intents = await asyncio.to_thread(_read_open_intents, ledger)
    stats = SettleStats()
    backoff = backoff or Backoff(base=0.5, cap=30.0)
    for intent in intents:
        if skip(intent.uid):
            continue
        while True:
            try:
                pod: wire.Pod | None = await get_pod(intent.namespace, intent.name)
                break
            except ApiError as exc:
                if exc.code == 404:
                    pod = None
                    break
                log.warning("settle_get_pod_failed", pod=_key(intent), error=str(exc))
            except KubeError as exc:
                log.warning("settle_api_unreachable", pod=_key(intent), error=str(exc))
            await backoff.sleep()
        backoff.reset()
        stats.checked += 1
        if skip(intent.uid):
            continue
        outcome = _settle_one(intent, pod, clock)
        if isinstance(outcome, PlacementRecord):
            if await asyncio.wrap_future(ledger.append(outcome)):
                stats.recovered += 1
        elif outcome is not None:
            await asyncio.wrap_future(ledger.append(outcome))
            stats.settled += 1
        else:
            stats.still_open += 1
    if intents:
        log.info("intents_settled", open_at_start=len(intents), **stats.__dict__)
    return stats


def _settle_one(
    intent: IntentRecord, pod: wire.Pod | None, clock: Callable[[], float]
) -> PlacementRecord | IntentRecord | None:
    """The row that settles ``intent`` given the pod as the API server has it now."""
    if pod is None or pod.metadata.uid != intent.uid:
        why = "pod gone" if pod is None else "pod recreated under the same name"
        note = f"{why} before its bind could be checked; whether it was bound is unknown"
    elif not pod.spec.nodeName:
        return None  # not bound: kube-scheduler retries it
    else:
        placement = recovered_placement(pod, "bound before a crash, found by its bind intent")
        if placement is not None:
            return placement
        note = f"bound to {pod.spec.nodeName} without lowcarb's decision annotation"
    return msgspec.structs.replace(intent, event="settled", at=clock(), note=note)


def _read_open_intents(ledger: Ledger) -> list[IntentRecord]:
    ledger.flush()  # intents queued before this read are committed, hence visible
    conn = open_reader(ledger.path)
    try:
        return open_intents(conn)
    finally:
        conn.close()


def _name(pod: wire.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _key(intent: IntentRecord) -> str:
    return f"{intent.namespace}/{intent.name}"
