"""Append-only sustainability ledger: placements, pod lifecycle, gate holds, accounted usage and
bind intents.

One SQLite file in WAL mode at a configurable path. Writers never run on the asyncio event loop:
:class:`Ledger` owns one writer thread that drains a queue, commits whatever is waiting in one
transaction (group commit) and only then resolves each record's future, so an acknowledged append
is on disk. With ``synchronous=FULL`` (the default) every commit fsyncs the WAL, which survives
power loss as well as ``kill -9``; ``NORMAL`` survives a process kill but may lose the last commits
on power loss.

Every record has an idempotent ``key`` (``INSERT OR IGNORE`` on a UNIQUE column): replaying the
pod watch after a restart, or accounting a pod twice, never duplicates a row. Triggers reject
UPDATE and DELETE, so rows are only ever appended. Readers (reports) open their own connection
and see a consistent snapshot while the server keeps writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C4F4342  # "LOCB": marks a file as a lowcarb ledger
DECISION_ANNOTATION = "lowcarb.dev/decision"

Synchronous = Literal["FULL", "NORMAL"]


class LedgerError(Exception):
    """A ledger file that is missing, corrupt, of another schema, or not a ledger at all."""


class PlacementRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One bind decision of the scheduler: where the pod went, with what data, and the alternative.

    ``counterfactual_kg`` is the carbon-unaware counterfactual: the *mean* of the expected
    emissions over all feasible candidate nodes (what a scheduler blind to carbon would emit on
    average), and ``counterfactual_g_per_kwh`` the mean expected intensity over those candidates.
    ``expected_kg`` is the expected emissions on the chosen node, from the same estimate.
    """

    table: ClassVar[str] = "placement"

    uid: str
    namespace: str
    name: str
    at: float  # epoch seconds of the decision
    node: str
    zone: str | None = None
    region: str | None = None  # node region label value (PUE by region)
    workload_class: str = "default"
    owner_kind: str | None = None
    owner_name: str | None = None
    gpu_model: str | None = None
    gpus: int = 0
    gpu_milli: int = 1000  # thousandths of each GPU used (openb convention; 1000 = whole GPUs)
    cpu_milli: int = 0
    memory_bytes: int = 0
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    intensity_age_s: float | None = None
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    score: int | None = None
    counterfactual_g_per_kwh: float | None = None
    counterfactual_kg: float | None = None
    expected_kg: float | None = None
    expected_duration_s: float | None = None
    candidates: int | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:placement"

    @property
    def job(self) -> str:
        """The owning workload (Job, JobSet, training run...) as ``namespace/Kind/name``."""
        if self.owner_kind and self.owner_name:
            return f"{self.namespace}/{self.owner_kind}/{self.owner_name}"
        return f"{self.namespace}/Pod/{self.name}"

    def to_annotation(self) -> str:
        """Compact JSON for the ``lowcarb.dev/decision`` pod annotation written at bind."""
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_annotation(cls, text: str) -> PlacementRecord:
        """Decode an annotation written by :meth:`to_annotation`; raises ``LedgerError``."""
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.DecodeError as exc:
            raise LedgerError(f"annotation {DECISION_ANNOTATION}: {exc}") from exc


class LifecycleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A pod started or stopped running (from the pod watch; container start/finish times)."""

    table: ClassVar[str] = "lifecycle"

    uid: str
    event: Literal["start", "end"]
    at: float
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:{self.event}"


class GateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A temporal-shift hold: when it was held, planned and actual release, intensity now vs then.

    ``intensity_now_g_per_kwh`` is the expected mean intensity over the run had the pod started
    when it was first held; ``intensity_release_g_per_kwh`` the same when it was released.
    """

    table: ClassVar[str] = "gate"

    uid: str
    namespace: str
    name: str
    held_at: float
    planned_release: float
    actual_release: float | None = None
    intensity_now_g_per_kwh: float | None = None
    intensity_release_g_per_kwh: float | None = None
    zone: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:gate"


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one pod consumed and emitted over its actual runtime (written by ``accounting``).

    Inventory columns (``energy_kwh``, ``co2e_location_kg``, ``co2e_market_kg``, ``embodied_kg``)
    are kept apart from the scheduling effect (``counterfactual_kg``, ``avoided_kg``).
    """

    table: ClassVar[str] = "usage"

    uid: str
    namespace: str
    name: str
    workload_class: str
    job: str
    node: str
    zone: str | None
    gpu_model: str | None
    start: float
    end: float
    day: str  # UTC date of ``start``: a run is attributed to the day it started
    gpu_hours: float
    energy_kwh: float
    co2e_location_kg: float
    co2e_market_kg: float
    market_basis: Literal["contract", "residual", "location"]
    embodied_kg: float
    counterfactual_kg: float
    avoided_kg: float
    estimated_kg: float  # part of co2e_location_kg resting on estimated or missing intensity
    method: str  # energy method: model | kepler | dcgm+model
    accounted_at: float
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:usage"


class IntentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A bind lowcarb is about to attempt (``bind``, committed before the Binding is sent), or
    the settlement of one whose pod it did not bind with a decision (``settled``).

    After a crash every pod lowcarb may have bound has a ``bind`` intent; :func:`open_intents`
    lists those with neither a placement row nor a ``settled`` row, for the scheduler to settle
    against the API server. Schema-additive: ledgers written before intents existed get the
    table when a writer opens them, and readers do not require it.
    """

    table: ClassVar[str] = "intent"

    uid: str
    namespace: str
    name: str
    node: str
    at: float
    event: Literal["bind", "settled"] = "bind"
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:{self.event}"


Record = PlacementRecord | LifecycleRecord | GateRecord | UsageRecord | IntentRecord
RECORD_TYPES: tuple[type[Record], ...] = (
    PlacementRecord,
    LifecycleRecord,
    GateRecord,
    UsageRecord,
    IntentRecord,
)
#: Tables a ledger may lack (added after schema version 1 shipped; created by the writer).
_OPTIONAL_TABLES = frozenset({IntentRecord.table})

_SQL_TYPES = {"float": "REAL", "int": "INTEGER"}


def _sql_type(annotation: str) -> str:
    """SQLite column type from a field's annotation text (``from __future__`` strings)."""
    base = annotation.replace(" | None", "").strip()
    return _SQL_TYPES.get(base, "TEXT")


def _columns(cls: type[Record]) -> tuple[str, ...]:
    return tuple(cls.__struct_fields__)


def _ddl(cls: type[Record]) -> list[str]:
    hints = cls.__annotations__
    cols = ",\n  ".join(f"{name} {_sql_type(hints[name])}" for name in _columns(cls))
    table = cls.table
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (\n  seq INTEGER PRIMARY KEY,\n"
        f"  key TEXT NOT NULL UNIQUE,\n  {cols}\n)",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'the lowcarb ledger is append-only'); END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'the lowcarb ledger is append-only'); END",
        f"CREATE INDEX IF NOT EXISTS {table}_uid ON {table}(uid)",
    ]


_EXTRA_INDEXES = [
    "CREATE INDEX IF NOT EXISTS usage_start ON usage(start)",
    "CREATE INDEX IF NOT EXISTS placement_at ON placement(at)",
]


def _row(record: Record) -> tuple[Any, ...]:
    values: list[Any] = [record.key]
    for name in _columns(type(record)):
        value = getattr(record, name)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        values.append(value)
    return tuple(values)


def _insert_sql(cls: type[Record]) -> str:
    cols = ("key", *_columns(cls))
    marks = ", ".join("?" for _ in cols)
    return f"INSERT OR IGNORE INTO {cls.table} ({', '.join(cols)}) VALUES ({marks})"


_INSERT = {cls: _insert_sql(cls) for cls in RECORD_TYPES}


def _describe(path: Path, exc: sqlite3.Error) -> LedgerError:
    return LedgerError(
        f"ledger {path}: not a readable lowcarb ledger ({exc}); restore it from a backup or "
        "move it aside so a new ledger is created, and check the --ledger path"
    )


def _check_schema(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise _describe(path, exc) from exc
    if not tables and create:
        return
    if app_id != APPLICATION_ID:
        raise LedgerError(
            f"ledger {path}: this SQLite file is not a lowcarb ledger (application_id "
            f"{app_id:#x}); point --ledger to a lowcarb ledger file or to a new path"
        )
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {path}: schema version {version} is newer than this lowcarb supports "
            f"({SCHEMA_VERSION}); upgrade lowcarb to read it"
        )
    missing = {cls.table for cls in RECORD_TYPES} - tables - _OPTIONAL_TABLES
    if missing and not create:
        raise LedgerError(
            f"ledger {path}: tables {sorted(missing)} are missing; the file is damaged or was "
            "not written by lowcarb"
        )


def _init_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for cls in RECORD_TYPES:
            for stmt in _ddl(cls):
                conn.execute(stmt)
        for stmt in _EXTRA_INDEXES:
            conn.execute(stmt)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_reader(path: str | Path) -> sqlite3.Connection:
    """A read-only connection for reports; safe while the server writes (WAL snapshot reads).

    Raises :class:`LedgerError` naming the path when the file is missing, corrupt or not a ledger.
    """
    path = Path(path)
    if not path.is_file():
        raise LedgerError(
            f"ledger {path}: no such file; the scheduler creates it on its first decision "
            "(check --ledger and the service's ledger path setting)"
        )
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise _describe(path, exc) from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        _check_schema(conn, path, create=False)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_writer(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    if not path.parent.is_dir():
        raise LedgerError(
            f"ledger {path}: directory {path.parent} does not exist; create it or choose "
            "another ledger path"
        )
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _describe(path, exc) from exc
    try:
        _check_schema(conn, path, create=True)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        _init_schema(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _describe(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


_STOP = object()


class Ledger:
    """The writing side: a background thread that group-commits appended records.

    ``append`` returns a future resolved with ``True`` (new row) or ``False`` (key already
    present) once the row is durably committed; ``append_async`` awaits it without blocking the
    event loop. Use as a context manager or call :meth:`close` to drain and stop.
    """

    def __init__(
        self, path: str | Path, *, synchronous: Synchronous = "FULL", max_batch: int = 1024
    ) -> None:
        self.path = Path(path)
        self._max_batch = max_batch
        self._conn = _open_writer(self.path, synchronous)
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
                raise LedgerError(f"ledger {self.path}: closed; cannot append")
            self._queue.put((record, fut))
        return fut

    async def append_async(self, record: Record) -> bool:
        """Append and wait for the durable commit without blocking the event loop."""
        return await asyncio.wrap_future(self.append(record))

    def append_many(self, records: Iterable[Record]) -> int:
        """Bulk load in one transaction on the caller's thread (simulator, benchmarks).

        Returns the number of new rows. Waits for queued appends first so order is kept.
        """
        self.flush()
        by_type: dict[type[Record], list[tuple[Any, ...]]] = {}
        for rec in records:
            by_type.setdefault(type(rec), []).append(_row(rec))
        done = threading.Event()
        result: list[int | BaseException] = []

        def job(conn: sqlite3.Connection) -> None:
            try:
                before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                for cls, rows in by_type.items():
                    conn.executemany(_INSERT[cls], rows)
                conn.execute("COMMIT")
                result.append(conn.total_changes - before)
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                result.append(exc)
            finally:
                done.set()

        self._queue.put(job)
        done.wait()
        out = result[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def flush(self) -> None:
        """Block until everything queued so far is committed."""
        fut: Future[bool] = Future()
        self._queue.put(fut)
        fut.result()

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

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
                    item(self._conn)
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
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = []
            for rec, _ in batch:
                cur = conn.execute(_INSERT[type(rec)], _row(rec))
                results.append(cur.rowcount == 1)
            conn.execute("COMMIT")
            self.commits += 1
        except Exception:  # sqlite errors, or a value that cannot be stored (bad scores)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for rec, fut in batch:  # isolate the bad record: one transaction each
                self._commit_one(rec, fut)
            return
        for (_, fut), new in zip(batch, results, strict=True):
            _resolve(fut, new)

    def _commit_one(self, rec: Record, fut: Future[bool]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(_INSERT[type(rec)], _row(rec))
            conn.execute("COMMIT")
            self.commits += 1
            _resolve(fut, cur.rowcount == 1)
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            _resolve(fut, LedgerError(f"ledger {self.path}: {type(rec).__name__}: {exc}"))


def _resolve(fut: Future[bool], value: bool | BaseException) -> None:
    """Set a future's outcome unless its waiter cancelled it meanwhile."""
    if fut.cancelled():
        return
    with contextlib.suppress(InvalidStateError):
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


R = TypeVar("R", PlacementRecord, LifecycleRecord, GateRecord, UsageRecord, IntentRecord)


def read_records(
    conn: sqlite3.Connection, cls: type[R], uids: Iterable[str] | None = None
) -> Iterator[R]:
    """Rows of ``cls``'s table as records in append order, optionally only these pod UIDs."""
    cols = _columns(cls)
    sql = f"SELECT {', '.join(cols)} FROM {cls.table}"
    args: tuple[Any, ...] = ()
    if uids is not None:
        sql += " WHERE uid IN (SELECT value FROM json_each(?))"
        args = (json.dumps(sorted(uids)),)
    for row in conn.execute(sql + " ORDER BY seq", args):
        data = dict(zip(cols, row, strict=True))
        if "scores" in data and isinstance(data["scores"], str):
            data["scores"] = json.loads(data["scores"])
        yield cls(**data)


def open_intents(conn: sqlite3.Connection) -> list[IntentRecord]:
    """``bind`` intents not settled yet: no placement row and no ``settled`` row for the pod."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if IntentRecord.table not in tables:
        return []
    cols = _columns(IntentRecord)
    sql = (
        f"SELECT {', '.join(cols)} FROM intent i WHERE i.event = 'bind' "
        "AND NOT EXISTS (SELECT 1 FROM placement p WHERE p.uid = i.uid) "
        "AND NOT EXISTS (SELECT 1 FROM intent s WHERE s.uid = i.uid AND s.event = 'settled') "
        "ORDER BY i.seq"
    )
    return [IntentRecord(**dict(zip(cols, row, strict=True))) for row in conn.execute(sql)]
