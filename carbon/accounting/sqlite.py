"""The SQLite ledger backend: one file in WAL mode, the embedded default.

Opens the writer's and the readers' connections, checks that a file is a lowcarb ledger of a
schema this version reads (``application_id`` and ``user_version``), and runs one transaction of
inserts for the writer thread of :class:`carbon.accounting.ledger.Ledger`. ``BEGIN IMMEDIATE``
takes the write lock at the start of a transaction, so two processes sharing a file wait for
each other (busy timeout 30 s) instead of deadlocking. With ``synchronous=FULL`` every commit
fsyncs the WAL (survives power loss); ``NORMAL`` survives a process kill. Readers see a
consistent snapshot while a writer appends (WAL). The statements come from
:mod:`carbon.accounting.store`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from carbon.accounting import store
from carbon.accounting.records import OPTIONAL_TABLES, RECORD_TYPES, LedgerError, Record

Synchronous = Literal["FULL", "NORMAL"]
_INSERT = store.INSERT["sqlite"]


def describe(path: Path, exc: sqlite3.Error) -> LedgerError:
    return LedgerError(
        f"ledger {path}: not a readable lowcarb ledger ({exc}); restore it from a backup or "
        "move it aside so a new ledger is created, and check the --ledger path"
    )


def check_schema(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    """Refuse a file that is not a lowcarb ledger, or of a newer schema, naming the path."""
    try:
        app_q, version_q, tables_q = store.SQLITE_PROBE
        app_id = conn.execute(app_q).fetchone()[0]
        version = conn.execute(version_q).fetchone()[0]
        tables = {r[0] for r in conn.execute(tables_q)}
    except sqlite3.DatabaseError as exc:
        raise describe(path, exc) from exc
    if not tables and create:
        return
    if app_id != store.APPLICATION_ID:
        raise LedgerError(
            f"ledger {path}: this SQLite file is not a lowcarb ledger (application_id "
            f"{app_id:#x}); point --ledger to a lowcarb ledger file or to a new path"
        )
    if version > store.SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {path}: schema version {version} is newer than this lowcarb supports "
            f"({store.SCHEMA_VERSION}); upgrade lowcarb to read it"
        )
    missing = {cls.table for cls in RECORD_TYPES} - tables - OPTIONAL_TABLES
    if missing and not create:
        raise LedgerError(
            f"ledger {path}: tables {sorted(missing)} are missing; the file is damaged or was "
            "not written by lowcarb"
        )


def _init_schema(conn: sqlite3.Connection) -> None:
    conn.execute(store.SQLITE_BEGIN)
    try:
        for stmt in store.schema("sqlite"):
            conn.execute(stmt)
        conn.execute(store.SQLITE_COMMIT)
    except BaseException:
        conn.execute(store.SQLITE_ROLLBACK)
        raise


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for reports; safe while the server writes (WAL snapshot reads)."""
    if not path.is_file():
        raise LedgerError(
            f"ledger {path}: no such file; the scheduler creates it on its first decision "
            "(check --ledger and the service's ledger path setting)"
        )
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    try:
        conn.execute(store.SQLITE_QUERY_ONLY)
        check_schema(conn, path, create=False)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteWriter:
    """The writer thread's connection to a ledger file (created with its schema if new)."""

    def __init__(self, path: Path, synchronous: Synchronous) -> None:
        self.path = path
        self.name = str(path)
        if not path.parent.is_dir():
            raise LedgerError(
                f"ledger {path}: directory {path.parent} does not exist; create it or choose "
                "another ledger path"
            )
        try:
            conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise describe(path, exc) from exc
        try:
            check_schema(conn, path, create=True)
            mode = conn.execute(store.SQLITE_WAL).fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"ledger {path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute(store.sqlite_synchronous(synchronous))
            _init_schema(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise describe(path, exc) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def insert(self, records: Sequence[Record]) -> list[bool]:
        """Insert in one transaction; True per new row, False per key already present.

        Raises (after rolling back) when any record cannot be stored.
        """
        conn = self._conn
        try:
            conn.execute(store.SQLITE_BEGIN)
            new = [conn.execute(_INSERT[type(r)], store.row(r)).rowcount == 1 for r in records]
            conn.execute(store.SQLITE_COMMIT)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(store.SQLITE_ROLLBACK)
            raise
        return new

    def insert_bulk(self, by_type: dict[type[Record], list[tuple[Any, ...]]]) -> int:
        """Insert prepared rows (:func:`store.row`) in one transaction; returns new rows."""
        conn = self._conn
        before = conn.total_changes
        try:
            conn.execute(store.SQLITE_BEGIN)
            for cls, rows in by_type.items():
                conn.executemany(_INSERT[cls], rows)
            conn.execute(store.SQLITE_COMMIT)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(store.SQLITE_ROLLBACK)
            raise
        return conn.total_changes - before

    def close(self) -> None:
        self._conn.close()
