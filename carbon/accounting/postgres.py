"""The PostgreSQL ledger backend (``--ledger postgresql://user@host/db``), through psycopg 3.

For replicas on different nodes: a SQLite file on a ReadWriteOnce volume cannot follow a failover,
a PostgreSQL server can, and two replicas may write at once. The semantics are SQLite's:

* **Durable acknowledgement**: a record's future resolves after the ``COMMIT`` of the transaction
  that holds it (group commit, one transaction per batch the writer thread drains). With
  ``synchronous=FULL`` the session runs ``synchronous_commit = on``: the commit returns once its
  WAL is flushed on the server (and on synchronous standbys, where the server has them).
* **Idempotent keys**: ``INSERT ... ON CONFLICT (key) DO NOTHING`` on a UNIQUE column, safe under
  concurrent writers, so two replicas appending the same watch events store each key once.
* **Append-only**: triggers raise on UPDATE, DELETE and TRUNCATE. lowcarb needs CREATE on the
  schema for its first start only; a DBA may also REVOKE UPDATE, DELETE and TRUNCATE from its
  role.
* **Snapshots for readers**: a reader is one ``REPEATABLE READ, READ ONLY`` transaction, so a
  report's queries all see the same moment while replicas keep writing.

Tables live in the connection's current schema (the first of ``search_path``; choose one with
``?options=-csearch_path%3Dlowcarb``). A ``lowcarb_meta`` table marks the schema as a lowcarb
ledger and holds its schema version; set-up runs under an advisory lock so replicas starting
together create it once. A lost connection is reopened and the batch retried once (its keys make
the retry harmless). PostgreSQL 14 or later. Passwords never appear in messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Literal

import psycopg

from carbon.accounting import store
from carbon.accounting.records import (
    OPTIONAL_TABLES,
    RECORD_TYPES,
    LedgerError,
    LedgerUnavailable,
    Record,
)
from carbon.accounting.target import redact

Synchronous = Literal["FULL", "NORMAL"]
CONNECT_TIMEOUT_S = 10
_INSERT = store.INSERT["postgresql"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection, or :class:`LedgerError` naming the (redacted) URL and the fix."""
    name = redact(url)
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lowcarb",
        )
    except psycopg.ProgrammingError as exc:  # a malformed URL or an unknown parameter
        raise LedgerError(
            f"ledger {name}: not a usable PostgreSQL URL ({_first_line(exc)}); write "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ) from None
    except psycopg.Error as exc:
        raise LedgerUnavailable(
            f"ledger {name}: cannot connect to PostgreSQL ({_first_line(exc)}); check the URL, "
            "that the server is up and that it accepts this user"
        ) from None


def check_schema(conn: psycopg.Connection[Any], name: str, *, create: bool) -> bool:
    """Whether the schema must be created; refuses what is not a lowcarb ledger it can read."""
    has_meta = conn.execute(store.POSTGRES_HAS_META).fetchone()
    tables = {r[0] for r in conn.execute(store.postgres_existing_tables())}
    if not (has_meta and has_meta[0]):
        if tables:
            raise LedgerError(
                f"ledger {name}: the schema has tables {sorted(tables)} but no lowcarb_meta "
                "table, so it is not a lowcarb ledger; give another database, or a schema of "
                "its own with ?options=-csearch_path%3Dlowcarb"
            )
        if not create:
            raise LedgerError(
                f"ledger {name}: no lowcarb ledger in this database yet; lowcarb serve creates "
                "it on its first start (check --ledger and the schema in search_path)"
            )
        return True
    meta = dict(conn.execute(store.POSTGRES_META).fetchall())
    if meta.get("application") != store.APPLICATION_NAME:
        raise LedgerError(
            f"ledger {name}: lowcarb_meta does not mark a lowcarb ledger (application "
            f"{meta.get('application')!r}); point --ledger to a lowcarb ledger or a new database"
        )
    version = str(meta.get("schema_version", ""))
    if not version.isdigit() or int(version) > store.SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {name}: schema version {version!r} is newer than this lowcarb supports "
            f"({store.SCHEMA_VERSION}); upgrade lowcarb to read it"
        )
    missing = {cls.table for cls in RECORD_TYPES} - tables - OPTIONAL_TABLES
    if missing and not create:
        raise LedgerError(
            f"ledger {name}: tables {sorted(missing)} are missing; the schema is damaged or was "
            "not written by lowcarb"
        )
    return bool(missing)


def open_reader(url: str) -> psycopg.Connection[Any]:
    """A read-only connection for reports: one consistent snapshot until it is closed."""
    conn = connect(url)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        check_schema(conn, redact(url), create=False)
    except psycopg.Error as exc:
        conn.close()
        raise LedgerError(
            f"ledger {redact(url)}: cannot read the ledger ({_first_line(exc)})"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


class PostgresWriter:
    """The writer thread's connection to a PostgreSQL ledger (schema created if missing)."""

    def __init__(self, url: str, synchronous: Synchronous) -> None:
        self.url = url
        self.name = redact(url)
        self._synchronous = synchronous
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.url)
        try:
            conn.execute(store.postgres_synchronous(self._synchronous))
            conn.execute(store.POSTGRES_SCHEMA_LOCK)  # held until this transaction ends
            if check_schema(conn, self.name, create=True):
                for stmt in store.schema("postgresql"):
                    conn.execute(stmt)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise LedgerError(
                f"ledger {self.name}: cannot set up the ledger schema ({_first_line(exc)}); "
                "the first start needs CREATE on the schema"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, work: Any) -> Any:
        """``work(conn)`` in one transaction; a lost connection is reopened and retried once, a
        deadlock with another writer (the server aborts one of the two) retried."""
        for attempt in (1, 2, 3):
            conn = self._conn
            if conn.closed or conn.broken:
                self._conn = conn = self._connect()
            try:
                result = work(conn)
                conn.commit()
                return result
            except psycopg.errors.DeadlockDetected:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                if attempt == 3:
                    raise
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.rollback()
                    raise
                if attempt > 1:
                    raise LedgerUnavailable(
                        f"ledger {self.name}: connection lost ({_first_line(exc)})"
                    ) from None
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                raise
        raise AssertionError("unreachable")

    def insert(self, records: Sequence[Record]) -> list[bool]:
        """Insert in one transaction; True per new row, False per key already present."""

        def work(conn: psycopg.Connection[Any]) -> set[str]:
            inserted: set[str] = set()
            with conn.cursor() as cur:
                for cls in RECORD_TYPES:  # one lock order in every writer: no deadlock
                    rows = [store.row(r) for r in records if type(r) is cls]
                    if not rows:
                        continue
                    cur.executemany(_INSERT[cls], rows, returning=True)
                    while True:
                        inserted.update(r[0] for r in cur.fetchall())
                        if not cur.nextset():
                            break
            return inserted

        inserted: set[str] = self._run(work)
        seen: set[str] = set()
        out = []
        for r in records:  # a key twice in one batch: the first is the new row
            out.append(r.key in inserted and r.key not in seen)
            seen.add(r.key)
        return out

    def insert_bulk(self, by_type: dict[type[Record], list[tuple[Any, ...]]]) -> int:
        """Insert prepared rows (:func:`store.row`) in one transaction; returns new rows."""

        def work(conn: psycopg.Connection[Any]) -> int:
            total = 0
            with conn.cursor() as cur:
                for cls, rows in by_type.items():
                    cur.executemany(_INSERT[cls], rows)
                    total += max(cur.rowcount, 0)
            return total

        count: int = self._run(work)
        return count

    def close(self) -> None:
        self._conn.close()
