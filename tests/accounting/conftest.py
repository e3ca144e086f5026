"""Ledger fixtures: a real PostgreSQL server for the session, and one ledger per test on either
backend (``backend`` parametrises a test over SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon.accounting.ledger import LedgerTarget
from tests.support.postgres import INSTALL_HINT, PgServer, find_bin, required

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL cluster for the whole session (skipped without binaries, outside CI)."""
    bindir = find_bin()
    if bindir is None:
        if required():
            pytest.fail(f"CI=true: {INSTALL_HINT}", pytrace=False)
        pytest.skip(INSTALL_HINT)
    try:
        server = PgServer.start(bindir)
    except RuntimeError as exc:
        if required():
            pytest.fail(f"CI=true: cannot start PostgreSQL: {exc}", pytrace=False)
        pytest.skip(f"cannot start PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.database()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> LedgerTarget:
    """Where a test's ledger lives: a new SQLite file or a new PostgreSQL database."""
    if backend == "sqlite":
        return tmp_path / "ledger.sqlite"
    return str(request.getfixturevalue("pg_url"))
