"""Append-only sustainability ledger: the writer with group commit, readers, either backend.

A ledger is a SQLite file (a path, the embedded default; :mod:`carbon.accounting.sqlite`) or a
PostgreSQL database (``postgresql://...``; :mod:`carbon.accounting.postgres`), holding the
records of :mod:`carbon.accounting.records` (placements, lifecycle, gate holds, usage, bind
intents). Writers never run on the asyncio event loop:
:class:`Ledger` owns one writer thread that drains a queue, commits whatever is waiting in one
transaction (group commit) and only then resolves each record's future, so an acknowledged append
is durable: it survives ``kill -9`` of the process, and with ``synchronous=FULL`` (the default)
power loss too; ``NORMAL`` may lose the last commits on power loss (server crash).

Every record has an idempotent ``key``: replaying the pod watch after a restart, two replicas
appending the same events, or accounting a pod twice never duplicates a row. Rows are only ever
appended (triggers refuse UPDATE and DELETE). Readers (:func:`open_reader`, for reports and the
accountant) see a consistent snapshot while writers append. All SQL is in
:mod:`carbon.accounting.store`.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, Protocol, overload

from carbon.accounting.records import (
    DECISION_ANNOTATION,
    RECORD_TYPES,
    GateRecord,
    IntentRecord,
    LedgerError,
    LedgerUnavailable,
    LifecycleRecord,
    PlacementRecord,
    Record,
    UsageRecord,
)
from carbon.accounting.sqlite import SqliteWriter, Synchronous
from carbon.accounting.sqlite import open_reader as _open_sqlite
from carbon.accounting.store import SCHEMA_VERSION, open_intents, read_records
from carbon.accounting.target import LedgerTarget, describe_target, parse_target

__all__ = [
    "DECISION_ANNOTATION",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "GateRecord",
    "IntentRecord",
    "Ledger",
    "LedgerError",
    "LedgerTarget",
    "LedgerUnavailable",
    "LifecycleRecord",
    "PlacementRecord",
    "Reader",
    "Record",
    "Synchronous",
    "UsageRecord",
    "describe_target",
    "open_intents",
    "open_reader",
    "parse_target",
    "read_records",
]


class ReaderCursor(Protocol):
    """What both backends' cursors offer a reader (DB-API)."""

    @property
    def description(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Reader(Protocol):
    """A read-only connection of either backend (``sqlite3`` or ``psycopg``)."""

    def execute(self, sql: str, params: Any = ..., /) -> ReaderCursor: ...
    def close(self) -> None: ...


@overload
def open_reader(path: Path) -> sqlite3.Connection: ...
@overload
def open_reader(path: LedgerTarget) -> Reader: ...
def open_reader(path: LedgerTarget) -> sqlite3.Connection | Reader:
    """A read-only connection for reports; safe while servers write (snapshot reads).

    Raises :class:`LedgerError` naming the ledger when it is missing, corrupt or not a ledger.
    """
    target = parse_target(path)
    if isinstance(target, str):  # psycopg is imported only when a PostgreSQL ledger is used
        from carbon.accounting.postgres import open_reader as open_postgres

        return open_postgres(target)
    return _open_sqlite(target)


class _Writer(Protocol):
    name: str

    def insert(self, records: Sequence[Record]) -> list[bool]: ...
    def insert_bulk(self, by_type: dict[type[Record], list[tuple[Any, ...]]]) -> int: ...
    def close(self) -> None: ...


def _open_writer(target: LedgerTarget, synchronous: Synchronous) -> _Writer:
    if isinstance(target, str):
        from carbon.accounting.postgres import PostgresWriter

        return PostgresWriter(target, synchronous)
    return SqliteWriter(target, synchronous)


_STOP = object()


class Ledger:
    """The writing side: a background thread that group-commits appended records.

    ``path`` is a SQLite file or a ``postgresql://`` URL. ``append`` returns a future resolved
    with ``True`` (new row) or ``False`` (key already present) once the row is durably committed;
    ``append_async`` awaits it without blocking the event loop. Use as a context manager or call
    :meth:`close` to drain and stop.
    """

    def __init__(
        self, path: str | Path, *, synchronous: Synchronous = "FULL", max_batch: int = 1024
    ) -> None:
        self.path: LedgerTarget = parse_target(path)
        self._max_batch = max_batch
        self._writer = _open_writer(self.path, synchronous)
        self.name = self._writer.name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="lowcarb-ledger", daemon=True)
        self._thread.start()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, record: Record) -> Future[bool]:
        """Queue ``record``; the future resolves after the commit that contains it."""
        if not isinstance(record, RECORD_TYPES):
            raise TypeError(f"not a ledger record: {type(record).__name__}")
        fut: Future[bool] = Future()
        with self._lock:
            if self._closed:
                raise LedgerError(f"ledger {self.name}: closed; cannot append")
            self._queue.put((record, fut))
        return fut

    async def append_async(self, record: Record) -> bool:
        """Append and wait for the durable commit without blocking the event loop."""
        return await asyncio.wrap_future(self.append(record))

    def append_many(self, records: Iterable[Record]) -> int:
        """Bulk load in one transaction on the writer thread (simulator, benchmarks).

        Returns the number of new rows. Waits for queued appends first so order is kept.
        """
        from carbon.accounting.store import row

        self.flush()
        by_type: dict[type[Record], list[tuple[Any, ...]]] = {}
        for rec in records:
            by_type.setdefault(type(rec), []).append(row(rec))
        fut: Future[int] = Future()

        def job() -> None:
            try:
                fut.set_result(self._writer.insert_bulk(by_type))
            except BaseException as exc:
                fut.set_exception(exc)

        self._queue.put(job)
        return fut.result()

    def flush(self) -> None:
        """Block until everything queued so far is committed."""
        fut: Future[bool] = Future()
        self._queue.put(fut)
        fut.result()

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        self._writer.close()

    # writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[tuple[Record, Future[bool]]] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, Future):
                    self._commit(batch)
                    batch = []
                    _resolve(item, True)
                elif callable(item):
                    self._commit(batch)
                    batch = []
                    item()
                else:
                    batch.append(item)
                if stop or len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: Sequence[tuple[Record, Future[bool]]]) -> None:
        if not batch:
            return
        # A record whose waiter was cancelled is still written: the decision happened.
        try:
            results = self._writer.insert([rec for rec, _ in batch])
            self.commits += 1
        except LedgerUnavailable as exc:  # no record of this batch can be written now
            for _, fut in batch:
                _resolve(fut, exc)
            return
        except Exception:  # database errors, or a value that cannot be stored (bad scores)
            for rec, fut in batch:  # isolate the bad record: one transaction each
                self._commit_one(rec, fut)
            return
        for (_, fut), new in zip(batch, results, strict=True):
            _resolve(fut, new)

    def _commit_one(self, rec: Record, fut: Future[bool]) -> None:
        try:
            (new,) = self._writer.insert([rec])
            self.commits += 1
            _resolve(fut, new)
        except LedgerUnavailable as exc:
            _resolve(fut, exc)
        except Exception as exc:
            _resolve(fut, LedgerError(f"ledger {self.name}: {type(rec).__name__}: {exc}"))


def _resolve(fut: Future[bool], value: bool | BaseException) -> None:
    """Set a future's outcome unless its waiter cancelled it meanwhile."""
    if fut.cancelled():
        return
    try:
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)
    except InvalidStateError:
        pass
