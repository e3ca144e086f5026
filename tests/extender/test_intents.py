"""Bind intents, their group commit, and the repairs that make placement rows exactly-once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import msgspec
import pytest

from carbon.accounting.ledger import (
    IntentRecord,
    Ledger,
    LedgerTarget,
    PlacementRecord,
    Record,
    open_intents,
    open_reader,
    read_records,
)
from carbon.backoff import Backoff
from scheduler import wire
from scheduler.extender.intents import GroupCommit, recovered_placement, settle_intents
from scheduler.extender.records import LedgerSink
from scheduler.kube import ApiError, ApiUnavailable, Status
from scheduler.names import ANN_DECISION
from tests.support.ledger import placement

NOW = 1_700_000_000.0


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def intent(i: int) -> IntentRecord:
    return IntentRecord(uid=f"u{i}", namespace="ml", name=f"p{i}", node=f"n{i % 5}", at=NOW + i)


def bound_pod(
    record: PlacementRecord, *, uid: str | None = None, node: str | None = None
) -> wire.Pod:
    """The pod as the API server has it after lowcarb's Binding (annotation copied onto it)."""
    return msgspec.convert(
        {
            "metadata": {
                "name": record.name,
                "namespace": record.namespace,
                "uid": uid or record.uid,
                "annotations": {ANN_DECISION: record.to_annotation(), "other": "x"},
            },
            "spec": {"nodeName": record.node if node is None else node},
        },
        wire.Pod,
    )


def rows(path: LedgerTarget) -> list[PlacementRecord]:
    conn = open_reader(path)
    try:
        return list(read_records(conn, PlacementRecord))
    finally:
        conn.close()


class ManualLedger:
    """A ledger double whose commits the test completes by hand (appends queue in order)."""

    def __init__(self) -> None:
        self.queued: list[tuple[Record, Future[bool]]] = []

    def append(self, record: Record) -> Future[bool]:
        fut: Future[bool] = Future()
        self.queued.append((record, fut))
        return fut

    def commit(self) -> list[Record]:
        done = [(r, f) for r, f in self.queued if not f.done()]
        for _, fut in done:
            fut.set_result(True)
        return [r for r, _ in done]


# --- group commit -------------------------------------------------------------------------------


async def test_a_lone_intent_is_sent_at_once_and_waits_for_its_commit() -> None:
    led = ManualLedger()
    group = GroupCommit(led, max_wait_s=10.0)  # type: ignore[arg-type]
    task = asyncio.create_task(group.append(intent(0)))
    await asyncio.sleep(0)
    assert [r for r, _ in led.queued] == [intent(0)]  # no wait when nothing is committing
    assert not task.done()
    led.commit()
    assert await asyncio.wait_for(task, 1) is True


async def test_intents_arriving_during_a_commit_share_the_next_one() -> None:
    led = ManualLedger()
    group = GroupCommit(led, max_wait_s=10.0)  # type: ignore[arg-type]
    first = asyncio.create_task(group.append(intent(0)))
    await asyncio.sleep(0)
    others = [asyncio.create_task(group.append(intent(i))) for i in range(1, 6)]
    await asyncio.sleep(0.05)
    assert len(led.queued) == 1  # the group stays open while the first commit runs
    assert led.commit() == [intent(0)]
    await first
    await asyncio.sleep(0.01)
    assert led.commit() == [intent(i) for i in range(1, 6)]  # sent together: one transaction
    assert await asyncio.gather(*others) == [True] * 5
    assert group.groups == 2


async def test_the_wait_for_company_is_bounded() -> None:
    led = ManualLedger()
    group = GroupCommit(led, max_wait_s=0.02)  # type: ignore[arg-type]
    first = asyncio.create_task(group.append(intent(0)))
    await asyncio.sleep(0)
    second = asyncio.create_task(group.append(intent(1)))
    await asyncio.sleep(0.2)  # the first commit never finishes: the second goes anyway
    assert [r for r, _ in led.queued] == [intent(0), intent(1)]
    led.commit()
    assert await asyncio.gather(first, second) == [True, True]


async def test_deferred_rows_ride_on_the_next_group_or_go_alone_after_the_delay() -> None:
    led = ManualLedger()
    group = GroupCommit(led, max_delay_s=0.05)  # type: ignore[arg-type]
    row = placement(1, NOW)
    done = group.defer(row)
    assert led.queued == []
    task = asyncio.create_task(group.append(intent(2)))
    await asyncio.sleep(0)
    assert [r for r, _ in led.queued] == [row, intent(2)]  # the placement first, same batch
    led.commit()
    await task
    assert done.result(timeout=1) is True
    alone = group.defer(placement(3, NOW))
    await asyncio.sleep(0.1)
    assert [r for r, _ in led.queued][-1] == placement(3, NOW)  # no bind followed: sent alone
    led.commit()
    assert alone.result(timeout=1) is True


async def test_concurrent_binds_commit_their_intents_in_few_transactions(ledger: Ledger) -> None:
    group = GroupCommit(ledger, max_wait_s=1.0)
    placements = [group.defer(placement(i, NOW)) for i in range(20)]
    results = await asyncio.gather(*(group.append(intent(i)) for i in range(20)))
    assert results == [True] * 20
    assert all(f.result(timeout=5) for f in placements)
    assert ledger.commits <= 3  # not 40: the first intent, then everyone that came meanwhile
    assert len(rows(ledger.path)) == 20


# --- recovery -----------------------------------------------------------------------------------


def test_a_bound_pods_decision_becomes_its_recovered_row() -> None:
    record = placement(7, NOW, note="carbon data 2 h old")
    got = recovered_placement(bound_pod(record), "found at start")
    assert got is not None
    assert msgspec.structs.replace(got, note=record.note) == record  # the very decision
    assert got.note == "recovered: found at start; carbon data 2 h old"


@pytest.mark.parametrize(
    "case", ["copied-to-another-pod", "other-node", "not-bound", "unreadable", "no-annotation"]
)
def test_only_this_pods_own_decision_is_recovered(case: str) -> None:
    record = placement(7, NOW)
    pod = bound_pod(
        record,
        uid="someone-else" if case == "copied-to-another-pod" else None,
        node={"other-node": "n-other", "not-bound": ""}.get(case),
    )
    ann = pod.metadata.annotations or {}
    if case == "unreadable":
        ann[ANN_DECISION] = "{not json"
    if case == "no-annotation":
        del ann[ANN_DECISION]
    assert recovered_placement(pod, "x") is None


def test_older_ledgers_without_the_intent_table_still_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE intent")  # as a ledger written before intents existed
    conn.commit()
    conn.close()
    reader = open_reader(path)
    assert open_intents(reader) == []
    reader.close()
    with Ledger(path) as led:  # a writer adds the table
        led.append(intent(1)).result(timeout=5)
    reader = open_reader(path)
    assert open_intents(reader) == [intent(1)]
    reader.close()


async def test_settle_checks_every_open_intent_against_the_api(ledger: Ledger) -> None:
    records = {i: placement(i, NOW) for i in range(6)}
    for rec in records.values():
        ledger.append(
            IntentRecord(uid=rec.uid, namespace=rec.namespace, name=rec.name, node=rec.node, at=NOW)
        )
    ledger.append(records[5]).result(timeout=5)  # bound and recorded before the crash
    unbound = msgspec.convert(
        {"metadata": {"name": records[1].name, "namespace": "ml", "uid": records[1].uid}},
        wire.Pod,
    )
    bare = bound_pod(records[4])
    (bare.metadata.annotations or {}).pop(ANN_DECISION)
    pods: dict[str, wire.Pod | None] = {
        records[0].name: bound_pod(records[0]),  # bound with its decision: recovered
        records[1].name: unbound,  # not bound: stays open
        records[2].name: None,  # deleted meanwhile: settled, unknown
        records[3].name: bound_pod(records[3], uid="recreated"),  # another pod now: settled
        records[4].name: bare,  # bound by someone else: settled
    }
    calls: list[str] = []
    outage = [True]

    async def get_pod(namespace: str, name: str) -> wire.Pod:
        calls.append(name)
        if outage:  # the API server is down at first: retried, not given up
            outage.clear()
            raise ApiUnavailable("connection refused")
        pod = pods[name]
        if pod is None:
            raise ApiError(404, Status(reason="NotFound", code=404))
        return pod

    stats = await settle_intents(
        ledger, get_pod, clock=lambda: NOW + 60, backoff=Backoff(base=0.01, cap=0.02)
    )
    assert (stats.checked, stats.recovered, stats.settled, stats.still_open) == (5, 1, 3, 1)
    assert calls[0] == calls[1] == records[0].name and records[5].name not in calls
    ledger.flush()
    by_uid = {r.uid: r for r in rows(ledger.path)}
    assert set(by_uid) == {records[0].uid, records[5].uid}
    assert (by_uid[records[0].uid].note or "").startswith("recovered: ")
    conn = open_reader(ledger.path)
    assert [i.uid for i in open_intents(conn)] == [records[1].uid]
    settled = [i for i in read_records(conn, IntentRecord) if i.event == "settled"]
    conn.close()
    notes = {i.uid: i.note or "" for i in settled}
    assert "pod gone" in notes[records[2].uid] and "recreated" in notes[records[3].uid]
    assert "without lowcarb's decision" in notes[records[4].uid]

    pods[records[1].name] = bound_pod(records[1])  # bound by a later bind, its row lost too
    again = await settle_intents(ledger, get_pod, clock=lambda: NOW + 120)
    assert (again.checked, again.recovered) == (1, 1)
    ledger.flush()
    assert len(rows(ledger.path)) == 3


async def test_the_watch_repairs_a_lost_row_once_and_never_a_live_one(ledger: Ledger) -> None:
    sink = LedgerSink(ledger, clock=lambda: NOW)
    lost, live, done = placement(1, NOW), placement(2, NOW), placement(3, NOW)
    ledger.append(done).result(timeout=5)
    assert await sink.record_intent(live)
    for _ in range(3):  # watch events and a relist: the same pods again and again
        for rec in (lost, live, done):
            sink.observe_pod(bound_pod(rec))
    sink.record_decision(live)  # the bind path's own row, after its Binding
    sink.intents.flush()
    ledger.flush()
    by_uid = {r.uid: r for r in rows(ledger.path)}
    assert sorted(by_uid) == sorted([lost.uid, live.uid, done.uid])
    assert (by_uid[lost.uid].note or "").startswith("recovered: ")
    assert by_uid[live.uid] == live and by_uid[done.uid] == done
    assert len(rows(ledger.path)) == 3
