"""The ledger store's SQL: every statement lowcarb sends to a ledger database, in both dialects.

lowcarb keeps its ledger in SQLite (one file, the embedded default) or PostgreSQL (a server that
several replicas share). This module is the only place that writes SQL: the schema derived from
the record structs (:mod:`carbon.accounting.records`), the idempotent inserts, the reads of
records, of finished pods still to account, and the grouped sums behind reports. The backends
(:mod:`carbon.accounting.sqlite`, :mod:`carbon.accounting.postgres`) own connections and
transactions and run the statements named here; :mod:`carbon.accounting.ledger` owns the writer
thread.

The two dialects keep the same semantics: a table per record type with an auto-increment
``seq`` (append order) and a UNIQUE ``key`` where a repeated key is ignored (``INSERT OR
IGNORE`` / ``ON CONFLICT (key) DO NOTHING``); triggers refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL), so rows are only ever appended. Reports group and sum in the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from carbon.accounting.records import RECORD_TYPES, IntentRecord, R, Record

Dialect = Literal["sqlite", "postgresql"]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C4F4342  # "LOCB": marks a SQLite file as a lowcarb ledger
APPLICATION_NAME = "lowcarb-ledger"  # the same mark in PostgreSQL's lowcarb_meta table
APPEND_ONLY = "the lowcarb ledger is append-only"

# ------------------------------------------------------------------------- transactions, settings

SQLITE_BEGIN = "BEGIN IMMEDIATE"  # take the write lock up front: no deadlock between writers
SQLITE_COMMIT = "COMMIT"
SQLITE_ROLLBACK = "ROLLBACK"
SQLITE_WAL = "PRAGMA journal_mode = WAL"
SQLITE_QUERY_ONLY = "PRAGMA query_only = ON"
SQLITE_PROBE = (
    "PRAGMA application_id",
    "PRAGMA user_version",
    "SELECT name FROM sqlite_master WHERE type = 'table'",
)


def sqlite_synchronous(level: Literal["FULL", "NORMAL"]) -> str:
    """FULL fsyncs the WAL at every commit (survives power loss); NORMAL survives a kill."""
    return f"PRAGMA synchronous = {level}"


def postgres_synchronous(level: Literal["FULL", "NORMAL"]) -> str:
    """FULL: a commit returns once its WAL is flushed; NORMAL: a server crash may lose the last
    commits (never corrupts), as ``synchronous=NORMAL`` does for SQLite."""
    return f"SET synchronous_commit TO {'on' if level == 'FULL' else 'off'}"


POSTGRES_READ_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# one schema set-up at a time when several replicas start together (CREATE ... IF NOT EXISTS
# races on PostgreSQL's catalogs)
POSTGRES_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('lowcarb-ledger-schema'))"
POSTGRES_META = "SELECT name, value FROM lowcarb_meta"
POSTGRES_HAS_META = "SELECT to_regclass('lowcarb_meta') IS NOT NULL"


def postgres_existing_tables() -> str:
    """Which record tables exist in the connection's schema (search_path), one row each."""
    names = ", ".join(f"'{cls.table}'" for cls in RECORD_TYPES)
    return (
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' "
        f"AND c.relnamespace = current_schema()::regnamespace AND c.relname IN ({names})"
    )


# ------------------------------------------------------------------------------------- schema

_SQL_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"float": "REAL", "int": "INTEGER"},
    "postgresql": {"float": "double precision", "int": "bigint"},
}


def columns(cls: type[Record]) -> tuple[str, ...]:
    """The record's columns (its fields, in order); every table also has ``seq`` and ``key``."""
    return tuple(cls.__struct_fields__)


def _names(cols: Sequence[str], dialect: Dialect) -> str:
    """A column list; quoted for PostgreSQL, where ``end`` is a reserved word."""
    return ", ".join(cols) if dialect == "sqlite" else ", ".join(f'"{c}"' for c in cols)


def _sql_type(annotation: str, dialect: Dialect) -> str:
    """Column type from a field's annotation text (``from __future__`` strings)."""
    base = annotation.replace(" | None", "").strip()
    return _SQL_TYPES[dialect].get(base, "TEXT")


def _table(cls: type[Record], dialect: Dialect) -> str:
    hints = cls.__annotations__
    cols = ",\n  ".join(
        f"{_names([name], dialect)} {_sql_type(hints[name], dialect)}" for name in columns(cls)
    )
    seq = (
        "seq INTEGER PRIMARY KEY"
        if dialect == "sqlite"
        else "seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {cls.table} (\n  {seq},\n  key TEXT NOT NULL UNIQUE,\n"
        f"  {cols}\n)"
    )


_INDEXES = [
    *(f"CREATE INDEX IF NOT EXISTS {c.table}_uid ON {c.table}(uid)" for c in RECORD_TYPES),
    "CREATE INDEX IF NOT EXISTS usage_start ON usage(start)",
    "CREATE INDEX IF NOT EXISTS placement_at ON placement(at)",
]


def schema(dialect: Dialect) -> list[str]:
    """Statements creating a missing ledger schema; each is a no-op where it already exists."""
    out: list[str] = []
    if dialect == "sqlite":
        for cls in RECORD_TYPES:
            t = cls.table
            out.append(_table(cls, dialect))
            out += [
                f"CREATE TRIGGER IF NOT EXISTS {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
                for verb in ("UPDATE", "DELETE")
            ]
        out += _INDEXES
        out += [
            f"PRAGMA application_id = {APPLICATION_ID}",
            f"PRAGMA user_version = {SCHEMA_VERSION}",
        ]
        return out
    out += [
        "CREATE TABLE IF NOT EXISTS lowcarb_meta (name text PRIMARY KEY, value text NOT NULL)",
        "CREATE OR REPLACE FUNCTION lowcarb_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}' "
        "USING ERRCODE = 'integrity_constraint_violation'; END $$",
    ]
    for cls in RECORD_TYPES:
        t = cls.table
        out += [
            _table(cls, dialect),
            f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
            "FOR EACH ROW EXECUTE FUNCTION lowcarb_append_only()",
            f"CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
            "FOR EACH STATEMENT EXECUTE FUNCTION lowcarb_append_only()",
        ]
    out += _INDEXES
    out.append(
        "INSERT INTO lowcarb_meta (name, value) VALUES "
        f"('application', '{APPLICATION_NAME}'), ('schema_version', '{SCHEMA_VERSION}') "
        "ON CONFLICT (name) DO NOTHING"
    )
    return out


# ------------------------------------------------------------------------------------- writes


def row(record: Record) -> tuple[Any, ...]:
    """The values of ``insert(type(record))``: the key, then the columns (dicts as JSON text)."""
    values: list[Any] = [record.key]
    for name in columns(type(record)):
        value = getattr(record, name)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        values.append(value)
    return tuple(values)


def _mark(dialect: Dialect) -> str:
    return "?" if dialect == "sqlite" else "%s"


def _insert(cls: type[Record], dialect: Dialect) -> str:
    cols = ("key", *columns(cls))
    marks = ", ".join(_mark(dialect) for _ in cols)
    if dialect == "sqlite":
        return f"INSERT OR IGNORE INTO {cls.table} ({_names(cols, dialect)}) VALUES ({marks})"
    # RETURNING: which keys a batch of executemany() really inserted (PostgreSQL reports no
    # per-statement row count through a pipeline otherwise)
    return (
        f"INSERT INTO {cls.table} ({_names(cols, dialect)}) VALUES ({marks}) "
        "ON CONFLICT (key) DO NOTHING RETURNING key"
    )


INSERT: dict[Dialect, dict[type[Record], str]] = {
    d: {cls: _insert(cls, d) for cls in RECORD_TYPES} for d in ("sqlite", "postgresql")
}

# -------------------------------------------------------------------------------------- reads


def dialect_of(conn: object) -> Dialect:
    """The dialect of an open connection (sqlite3, else psycopg)."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


def _uids_param(dialect: Dialect, uids: Iterable[str]) -> Any:
    # SQLite takes a JSON array through json_each(); psycopg adapts a list to an array
    return json.dumps(sorted(uids)) if dialect == "sqlite" else sorted(uids)


def _in_uids(dialect: Dialect, column: str, negate: bool = False) -> str:
    if dialect == "sqlite":
        return f"{column} {'NOT ' if negate else ''}IN (SELECT value FROM json_each(?))"
    return f"{'NOT ' if negate else ''}({column} = ANY(%s))"


def read_records(conn: Any, cls: type[R], uids: Iterable[str] | None = None) -> Iterator[R]:
    """Rows of ``cls``'s table as records in append order, optionally only these pod UIDs.

    ``conn`` is a reader from :func:`carbon.accounting.ledger.open_reader` (either backend).
    """
    dialect = dialect_of(conn)
    cols = columns(cls)
    sql = f"SELECT {_names(cols, dialect)} FROM {cls.table}"
    args: tuple[Any, ...] = ()
    if uids is not None:
        sql += " WHERE " + _in_uids(dialect, "uid")
        args = (_uids_param(dialect, uids),)
    for values in conn.execute(sql + " ORDER BY seq", args):
        data = dict(zip(cols, values, strict=True))
        if "scores" in data and isinstance(data["scores"], str):
            data["scores"] = json.loads(data["scores"])
        yield cls(**data)


# pods with a placement and an end of running but no usage row; ``s.at`` (start of running) is
# NULL when no start event was recorded
_FINISHED_UNACCOUNTED = (
    "FROM placement p "
    "JOIN lifecycle e ON e.uid = p.uid AND e.event = 'end' "
    "LEFT JOIN lifecycle s ON s.uid = p.uid AND s.event = 'start' "
    "WHERE NOT EXISTS (SELECT 1 FROM usage u WHERE u.uid = p.uid)"
)


def pending(
    conn: Any, cutoff: float, skip: Iterable[str], limit: int
) -> list[tuple[str, float | None, float]]:
    """Up to ``limit`` finished, unaccounted pods that ended by ``cutoff``, oldest end first,
    leaving out ``skip``: (uid, start or None, end)."""
    d = dialect_of(conn)
    m = _mark(d)
    sql = (
        f"SELECT p.uid, s.at, e.at {_FINISHED_UNACCOUNTED} AND e.at <= {m} "
        f"AND {_in_uids(d, 'p.uid', negate=True)} ORDER BY e.at, p.uid LIMIT {m}"
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(sql, (cutoff, _uids_param(d, skip), limit))]


def _run_window(
    dialect: Dialect, start: float | None, end: float | None
) -> tuple[str, list[float]]:
    """``AND`` clauses on a pending pod's run start (decision time without a start event)."""
    clauses, args = [], []
    if start is not None:
        clauses.append(f"COALESCE(s.at, p.at) >= {_mark(dialect)}")
        args.append(start)
    if end is not None:
        clauses.append(f"COALESCE(s.at, p.at) < {_mark(dialect)}")
        args.append(end)
    return "".join(f" AND {c}" for c in clauses), args


def unaccounted(
    conn: Any, start: float | None = None, end: float | None = None
) -> list[tuple[str, float | None, float]]:
    """Every finished, unaccounted pod whose run started in [start, end): (uid, start, end)."""
    where, args = _run_window(dialect_of(conn), start, end)
    sql = f"SELECT p.uid, s.at, e.at {_FINISHED_UNACCOUNTED}{where} ORDER BY e.at, p.uid"
    return [(r[0], r[1], r[2]) for r in conn.execute(sql, args)]


def unaccounted_summary(
    conn: Any, start: float | None = None, end: float | None = None
) -> tuple[int, float | None, float | None]:
    """(count, earliest end, latest end) of :func:`unaccounted` without loading the rows."""
    where, args = _run_window(dialect_of(conn), start, end)
    sql = f"SELECT COUNT(*), MIN(e.at), MAX(e.at) {_FINISHED_UNACCOUNTED}{where}"
    n, lo, hi = conn.execute(sql, args).fetchone()
    return int(n), (None if lo is None else float(lo)), (None if hi is None else float(hi))


# ------------------------------------------------------------------------------ report groups

# group key -> SQL expression over the usage table, and the name of its output column
GROUP_SQL: dict[str, tuple[str, str]] = {
    "pod": ("uid", "uid"),
    "namespace": ("namespace", "namespace"),
    "class": ("workload_class", "class"),
    "zone": ("COALESCE(zone, '')", "zone"),
    "node": ("node", "node"),
    "day": ("day", "day"),
    "job": ("job", "job"),
}
SUM_COLUMNS: tuple[str, ...] = (
    "gpu_hours",
    "energy_kwh",
    "co2e_location_kg",
    "co2e_market_kg",
    "embodied_kg",
    "counterfactual_kg",
    "avoided_kg",
)


def usage_groups(
    conn: Any, group_by: Sequence[str], start: float | None, end: float | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Usage rows summed per group over runs started in [start, end): (column names, rows).

    Columns: the group keys' output names (``uid`` for ``pod``, plus ``pod`` as
    ``namespace/name``), ``pods``, ``jobs``, :data:`SUM_COLUMNS`, ``estimated_kg`` and ``method``
    (the distinct energy methods, comma-joined in any order). Rows come sorted by the keys, in
    byte order on both backends.
    """
    d = dialect_of(conn)
    m = _mark(d)
    clauses, args = [], []
    if start is not None:
        clauses.append(f"start >= {m}")
        args.append(start)
    if end is not None:
        clauses.append(f"start < {m}")
        args.append(end)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    keys = [f'{GROUP_SQL[k][0]} AS "{GROUP_SQL[k][1]}"' for k in group_by]
    if d == "sqlite":  # SQLite compares text bytewise and orders by output names
        order = ", ".join(f'"{GROUP_SQL[k][1]}"' for k in group_by)
        group = order
    else:  # PostgreSQL: byte order whatever the database's collation
        order = ", ".join(f'{GROUP_SQL[k][0]} COLLATE "C"' for k in group_by)
        group = ", ".join(GROUP_SQL[k][0] for k in group_by)
    if "pod" in group_by:
        # a pod has exactly one usage row (idempotent key uid:usage): no GROUP BY needed
        sql = (
            f"SELECT {', '.join(keys)}, namespace || '/' || name AS pod, 1 AS pods, 1 AS jobs, "
            f"{', '.join(SUM_COLUMNS)}, estimated_kg, method FROM usage{where} ORDER BY {order}"
        )
    else:
        jobs = "1" if "job" in group_by else "COUNT(DISTINCT job)"
        total = "TOTAL({})" if d == "sqlite" else "COALESCE(SUM({}), 0.0)"
        sums = [f"{total.format(c)} AS {c}" for c in (*SUM_COLUMNS, "estimated_kg")]
        methods = (
            "GROUP_CONCAT(DISTINCT method)" if d == "sqlite" else "string_agg(DISTINCT method, ',')"
        )
        sql = (
            f"SELECT {', '.join(keys)}, COUNT(*) AS pods, {jobs} AS jobs, {', '.join(sums)}, "
            f"{methods} AS method FROM usage{where} GROUP BY {group} ORDER BY {order}"
        )
    cur = conn.execute(sql, args)
    names = [desc[0] for desc in cur.description]
    return names, [tuple(r) for r in cur.fetchall()]


def open_intents(conn: Any) -> list[IntentRecord]:
    """``bind`` intents not settled yet: no placement row and no ``settled`` row for the pod."""
    dialect = dialect_of(conn)
    tables_q = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if dialect == "sqlite"
        else postgres_existing_tables()
    )
    if IntentRecord.table not in {r[0] for r in conn.execute(tables_q)}:
        return []  # a ledger from before intents existed
    cols = columns(IntentRecord)
    sql = (
        f"SELECT {_names([f'i.{c}' for c in cols], 'sqlite')} FROM intent i "
        "WHERE i.event = 'bind' "
        "AND NOT EXISTS (SELECT 1 FROM placement p WHERE p.uid = i.uid) "
        "AND NOT EXISTS (SELECT 1 FROM intent s WHERE s.uid = i.uid AND s.event = 'settled') "
        "ORDER BY i.seq"
    )
    return [IntentRecord(**dict(zip(cols, row, strict=True))) for row in conn.execute(sql)]
