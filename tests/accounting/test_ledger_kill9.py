"""kill -9 during a burst loses no acknowledged record; a restart replays without duplicates; two
writer processes never duplicate a row. Each test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger, LedgerTarget, LifecycleRecord, open_reader
from tests.support.ledger import ListHistory, hourly

WRITER = Path(__file__).with_name("burst_writer.py")


def _stored_keys(target: LedgerTarget) -> list[str]:
    """Every key of the placement and lifecycle tables, duplicates kept."""
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    reader = open_reader(target)
    keys = [
        str(row[0])
        for table in ("placement", "lifecycle")
        for row in reader.execute(f"SELECT key FROM {table}")
    ]
    reader.close()
    return keys


def _burst_then_kill(path: LedgerTarget, mode: str, acks_wanted: int) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    assert proc.stdout is not None
    try:
        while len(acked) < acks_wanted:
            line = proc.stdout.readline()
            if not line:
                assert proc.stderr is not None
                raise AssertionError(f"writer exited early: {proc.stderr.read()}")
            acked.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: the writer never stops on its own
        rest, _ = proc.communicate(timeout=30)
    acked.extend(k for k in rest.splitlines() if k.strip())
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_kill9_during_burst_loses_no_acknowledged_record(target: LedgerTarget) -> None:
    acked = _burst_then_kill(target, "decisions", 3000)
    present = set(_stored_keys(target))
    missing = [k for k in acked if k not in present]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:3]}"


async def test_restart_replays_watch_and_accounts_without_duplicates(target: LedgerTarget) -> None:
    path = target
    acked = _burst_then_kill(path, "decisions", 1500)
    acked_uids = {k.split(":")[0] for k in acked if k.endswith(":placement")}

    reader = open_reader(path)
    before = reader.execute("SELECT COUNT(*) FROM lifecycle").fetchone()[0]
    placed = reader.execute("SELECT uid, at FROM placement").fetchall()
    reader.close()

    # the restarted server relists pods: every start/end is seen again (same keys)
    with Ledger(path) as ledger:
        replay: list[LifecycleRecord] = []
        for uid, at in placed:  # the watch reports the same container start/finish times
            replay.append(LifecycleRecord(uid=uid, event="start", at=at + 1))
            replay.append(LifecycleRecord(uid=uid, event="end", at=at + 3601))
        new = [await ledger.append_async(r) for r in replay]
        assert sum(new) == 2 * len(placed) - before  # only events the kill cut off are added

        reader = open_reader(path)
        t_min, t_max = reader.execute("SELECT MIN(at), MAX(at) FROM lifecycle").fetchone()
        reader.close()
        first = datetime.fromtimestamp(t_min // 3600 * 3600, UTC)
        hours = int((t_max - t_min) // 3600) + 3
        history = ListHistory({"DE": hourly("DE", first, [300.0] * hours)})
        accountant = Accountant(ledger, history, clock=lambda: t_max + 60)  # just after the runs
        assert await accountant.account_pending() == len(placed)
        assert await accountant.account_pending() == 0  # idempotent: nothing left, no dupes

    reader = open_reader(path)
    uids = [r[0] for r in reader.execute("SELECT uid FROM usage")]
    lifecycle = reader.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM lifecycle").fetchone()
    reader.close()
    assert len(uids) == len(set(uids)) == len(placed)
    assert acked_uids <= set(uids)
    assert lifecycle == (2 * len(placed), 2 * len(placed))


def test_two_writer_processes_share_one_ledger_without_duplicates(target: LedgerTarget) -> None:
    """Two replicas (one node's file, or one PostgreSQL) append the same watch events at once."""
    path = target
    Ledger(path).close()  # created once, as the first replica would
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(path), "decisions"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    acked: list[set[str]] = [set(), set()]
    try:
        for proc, keys in zip(procs, acked, strict=True):
            assert proc.stdout is not None
            while len(keys) < 1500:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else "writer exited"
                keys.add(line.strip())
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.communicate(timeout=30)
    stored = _stored_keys(path)
    assert len(stored) == len(set(stored))  # both wrote the same keys: each is stored once
    assert acked[0] | acked[1] <= set(stored)
