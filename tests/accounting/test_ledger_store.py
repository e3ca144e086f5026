"""The ledger on both backends: durable acknowledged appends, idempotent keys, append-only, clear
errors. ``target`` runs a test on a SQLite file and on a database of a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from carbon.accounting.ledger import (
    DECISION_ANNOTATION,
    SCHEMA_VERSION,
    GateRecord,
    Ledger,
    LedgerError,
    LedgerTarget,
    LedgerUnavailable,
    LifecycleRecord,
    PlacementRecord,
    UsageRecord,
    open_reader,
    parse_target,
    read_records,
)
from tests.support.fakeapi import free_port
from tests.support.ledger import placement, run

T0 = 1_700_000_000.0


def test_append_is_acknowledged_after_commit_and_readable(target: LedgerTarget) -> None:
    rec = placement(1, T0)
    usage = UsageRecord(
        uid="u-end", namespace="ml", name="p", workload_class="batch", job="ml/Job/j",
        node="n1", zone=None, gpu_model=None, start=T0, end=T0 + 60, day="2023-11-14",
        gpu_hours=0.0, energy_kwh=0.01, co2e_location_kg=0.002, co2e_market_kg=0.002,
        market_basis="location", embodied_kg=0.0, counterfactual_kg=0.002, avoided_kg=0.0,
        estimated_kg=0.0, method="model", accounted_at=T0 + 61,
    )  # fmt: skip
    with Ledger(target) as ledger:
        assert ledger.append(rec).result(timeout=10) is True
        assert ledger.append(usage).result(timeout=10) is True  # "end" is a column name too
        # a separate connection sees the rows as soon as the appends are acknowledged
        reader = open_reader(target)
        got = list(read_records(reader, PlacementRecord))
        assert list(read_records(reader, UsageRecord, {"u-end"})) == [usage]
        reader.close()
    assert got == [rec]
    assert got[0].scores == {"carbon": 0.8, "gpu_fit": 0.5}
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
    else:
        import psycopg

        with psycopg.connect(target) as pg:
            meta: dict[str, str] = dict(
                pg.execute("SELECT name, value FROM lowcarb_meta").fetchall()
            )
        assert meta == {"application": "lowcarb-ledger", "schema_version": str(SCHEMA_VERSION)}


async def test_async_appends_group_commit_without_blocking_the_loop(target: LedgerTarget) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    with Ledger(target) as ledger:
        task = asyncio.create_task(ticker())
        results = await asyncio.gather(
            *(ledger.append_async(r) for i in range(500) for r in run(f"u{i}", T0, T0 + 60))
        )
        task.cancel()
        assert all(results) and len(results) == 1000
        # many records share a commit (group commit), and the loop kept running meanwhile
        assert ledger.commits < 1000
        assert ticks > 0


def test_duplicate_keys_are_ignored_and_reported(target: LedgerTarget) -> None:
    with Ledger(target) as ledger:
        first = [ledger.append(r).result() for r in run("u1", T0, T0 + 10)]
        again = [ledger.append(r).result() for r in run("u1", T0 + 5, T0 + 99)]
        assert first == [True, True]
        assert again == [False, False]
    reader = open_reader(target)
    rows = list(read_records(reader, LifecycleRecord))
    reader.close()
    assert [(r.event, r.at) for r in rows] == [("start", T0), ("end", T0 + 10)]


def test_rows_cannot_be_updated_or_deleted(target: LedgerTarget) -> None:
    with Ledger(target) as ledger:
        ledger.append(placement(1, T0)).result()
    statements = ["UPDATE placement SET node = 'other'", "DELETE FROM placement"]
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        for sql in statements:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(target, autocommit=True) as pg:  # the owner, a superuser even
            for sql in [*statements, "TRUNCATE placement"]:
                with pytest.raises(
                    psycopg.errors.IntegrityConstraintViolation, match="append-only"
                ):
                    pg.execute(sql)
    reader = open_reader(target)
    assert [r.node for r in read_records(reader, PlacementRecord)] == ["node-01"]
    reader.close()


def test_bulk_append_many_is_idempotent(target: LedgerTarget) -> None:
    records = [placement(i, T0 + i) for i in range(300)]
    with Ledger(target) as ledger:
        assert ledger.append_many(records) == 300
        assert ledger.append_many(records[:50]) == 0
        assert ledger.append(placement(300, T0)).result() is True


def test_missing_ledger_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "ledger.sqlite"
    with pytest.raises(LedgerError, match=re.escape(str(path))) as err:
        open_reader(path)
    assert "no such file" in str(err.value)
    with pytest.raises(LedgerError, match=r"directory .* does not exist"):
        Ledger(path)


def test_corrupt_ledger_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.append(placement(1, T0)).result()
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00garbage" * 12 + b"\x00\x00\x00\x00"  # destroy the SQLite header
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match=re.escape(str(path))) as err:
        open_reader(path)
    assert "not a readable lowcarb ledger" in str(err.value)
    with pytest.raises(LedgerError, match=re.escape(str(path))):
        Ledger(path)


def test_other_sqlite_file_and_newer_schema_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="not a lowcarb ledger"):
        open_reader(other)
    with pytest.raises(LedgerError, match="not a lowcarb ledger"):
        Ledger(other)

    newer = tmp_path / "newer.sqlite"
    Ledger(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer than this lowcarb supports"):
        open_reader(newer)


def test_reader_sees_consistent_snapshots_while_a_thread_writes(target: LedgerTarget) -> None:
    ledger = Ledger(target)
    stop = threading.Event()
    acked = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            futs = [ledger.append(r) for r in run(f"w{i}", T0 + i, T0 + i + 5)]
            for f in futs:
                f.result()
            i += 1
            acked[0] = i

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        counts = []
        for k in range(30):
            deadline = time.monotonic() + 30
            while acked[0] <= k and time.monotonic() < deadline:
                time.sleep(0.001)
            reader = open_reader(target)
            if isinstance(reader, sqlite3.Connection):
                reader.execute("BEGIN")  # a PostgreSQL reader is one snapshot transaction
            starts = reader.execute("SELECT COUNT(*) FROM lifecycle WHERE event = 'start'")
            n_starts = starts.fetchone()[0]
            time.sleep(0.002)  # the writer appends meanwhile
            ends = reader.execute("SELECT COUNT(*) FROM lifecycle WHERE event = 'end'")
            n_ends = ends.fetchone()[0]
            again = reader.execute("SELECT COUNT(*) FROM lifecycle WHERE event = 'start'")
            assert again.fetchone()[0] == n_starts  # the snapshot holds
            reader.close()
            # start and end of a pod go in order: a snapshot never has more ends than starts
            # start and end of a pod go in order: a snapshot never has more ends than starts
            assert n_ends <= n_starts <= n_ends + 1
            assert n_starts > k  # everything acknowledged so far is visible to a new reader
            counts.append(n_starts)
    finally:
        stop.set()
        thread.join()
        ledger.close()
    assert counts == sorted(counts)


def test_closed_ledger_refuses_appends(target: LedgerTarget) -> None:
    ledger = Ledger(target)
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.append(placement(1, T0))


def test_gate_record_roundtrip(target: LedgerTarget) -> None:
    gate = GateRecord(
        uid="g1",
        namespace="ml",
        name="train-0",
        held_at=T0,
        planned_release=T0 + 4 * 3600,
        actual_release=T0 + 4 * 3600 + 12,
        intensity_now_g_per_kwh=310.0,
        intensity_release_g_per_kwh=118.0,
        zone="DE",
        reason="held until 14:00Z: forecast 118 vs 310 gCO2e/kWh now, -62%",
    )
    with Ledger(target) as ledger:
        assert ledger.append(gate).result() is True
        assert ledger.append(gate).result() is False
        reader = open_reader(ledger.path)
        assert list(read_records(reader, GateRecord)) == [gate]
        reader.close()


def test_decision_annotation_roundtrip() -> None:
    rec = placement(3, T0, note="expected-duration annotation '3x' unparsable; class default")
    text = rec.to_annotation()
    assert PlacementRecord.from_annotation(text) == rec
    with pytest.raises(LedgerError, match=DECISION_ANNOTATION):
        PlacementRecord.from_annotation('{"uid": 5}')


def test_a_bad_record_fails_alone_and_the_writer_keeps_going(target: LedgerTarget) -> None:
    with Ledger(target) as ledger:
        good = ledger.append(placement(1, T0))
        bad = ledger.append(placement(2, T0, scores={"carbon": object()}))  # not storable
        after = ledger.append(placement(3, T0))
        assert good.result() is True and after.result() is True
        with pytest.raises(LedgerError, match="PlacementRecord"):
            bad.result()
        with pytest.raises(TypeError, match="not a ledger record"):
            ledger.append("uid-4")  # type: ignore[arg-type]
        reader = open_reader(ledger.path)
        uids = [r.uid for r in read_records(reader, PlacementRecord)]
        reader.close()
    assert uids == ["uid-000001", "uid-000003"]


# ------------------------------------------------------------------ PostgreSQL-specific behaviour


def test_unknown_scheme_and_unreachable_server_name_the_ledger_without_its_password() -> None:
    with pytest.raises(LedgerError, match=r"unknown scheme 'mysql'.*postgresql://"):
        parse_target("mysql://u@db/ledger")
    port = free_port()  # nothing listens there
    url = f"postgresql://lowcarb:s3cret-pw@127.0.0.1:{port}/ledger?password=s3cret-pw"
    for attempt in (lambda: Ledger(url), lambda: open_reader(url)):
        with pytest.raises(LedgerUnavailable, match="cannot connect to PostgreSQL") as err:
            attempt()
        assert "s3cret-pw" not in str(err.value)
        assert f"postgresql://lowcarb:***@127.0.0.1:{port}/ledger?password=***" in str(err.value)


def test_postgres_reader_refuses_what_is_not_a_current_lowcarb_ledger(pg_url: str) -> None:
    import psycopg

    with pytest.raises(LedgerError, match="no lowcarb ledger in this database yet"):
        open_reader(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("CREATE TABLE placement (x int)")  # another application's table
    with pytest.raises(LedgerError, match="not a lowcarb ledger"):
        Ledger(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("DROP TABLE placement")
    Ledger(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(
            "UPDATE lowcarb_meta SET value = %s WHERE name = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    for attempt in (lambda: open_reader(pg_url), lambda: Ledger(pg_url)):
        with pytest.raises(LedgerError, match="newer than this lowcarb supports"):
            attempt()


def test_postgres_writer_reconnects_after_losing_its_connection(pg_url: str) -> None:
    import psycopg

    with Ledger(pg_url) as ledger:
        assert ledger.append(placement(1, T0)).result(timeout=30) is True
        with psycopg.connect(pg_url, autocommit=True) as admin:  # e.g. a failover, a restart
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'lowcarb' AND datname = current_database()"
            ).fetchall()
        assert killed and all(row[0] for row in killed)
        assert ledger.append(placement(2, T0)).result(timeout=30) is True
        assert ledger.append(placement(2, T0)).result(timeout=30) is False
    reader = open_reader(pg_url)
    assert [r.uid for r in read_records(reader, PlacementRecord)] == ["uid-000001", "uid-000002"]
    reader.close()
