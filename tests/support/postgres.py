"""A real PostgreSQL server for the ledger tests, started and stopped by the tests themselves.

The binaries come from ``LOWCARB_PG_BIN`` (a folder holding ``initdb`` and ``pg_ctl``, e.g. of a
server shipped in a Python wheel), else ``initdb`` on PATH, else Debian's
``/usr/lib/postgresql/<version>/bin`` (``apt-get install postgresql``). The cluster lives in a
fresh temporary folder and listens on a free loopback port and a socket in that folder only.
PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user
(``runuser``), owning the folder. Each test gets a database of its own (:meth:`database`).
Without binaries the tests are skipped with the reason, except in CI (``CI=true``), where that
is a failure: CI must run them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fakeapi import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package "
    "(apt-get install postgresql) or set LOWCARB_PG_BIN to a folder holding them"
)


def find_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or None."""
    env = os.environ.get("LOWCARB_PG_BIN")
    if env:
        return Path(env)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return debian[-1].parent if debian else None


def required() -> bool:
    """CI must run the PostgreSQL tests: a missing server fails there instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


@dataclass
class PgServer:
    """A running throwaway cluster; ``url(db)`` connects over loopback TCP as a superuser."""

    bindir: Path
    root: Path
    port: int
    user: str = "lowcarb"
    _as: list[str] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    @classmethod
    def start(cls, bindir: Path) -> PgServer:
        root = Path(tempfile.mkdtemp(prefix="lowcarb-pg-"))
        server = cls(bindir=bindir, root=root, port=free_port())
        if os.geteuid() == 0:  # postgres will not run as root: hand it the folder
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(root)
                raise RuntimeError(
                    "running as root and there is no 'postgres' user to run the server as; "
                    "install Debian's postgresql package or run the tests as another user"
                ) from None
            os.chown(root, owner.pw_uid, owner.pw_gid)
            server._as = ["runuser", "-u", "postgres", "--"]
        init = server._run(
            str(bindir / "initdb"), "-D", str(server.data), "-U", server.user,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
            "-c max_connections=60 -c shared_buffers=32MB"
        )
        started = server._run(
            str(bindir / "pg_ctl"), "-D", str(server.data), "-o", options,
            "-l", str(root / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {log[-2000:]}")
        return server

    def database(self) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = f"ledger_{next(self._seq)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
