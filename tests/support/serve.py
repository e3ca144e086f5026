"""Serving for the HTTP tests: an ASGI app under uvicorn on 127.0.0.1 in the test's event loop
(:func:`uvicorn_serving`), and ``lowcarb serve`` as real processes (start with flags, wait until
ready, stop them all at the end: terminate, then kill after 10 s), each with its own log file;
:func:`start_ready` for tests that own the process (kill -9 and restart it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.fakeapi import free_port, lowcarb_command

STARTUP_SECONDS = 60.0


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def spawn(
    log_path: Path, *flags: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``lowcarb serve --host 127.0.0.1 *flags``, its output appended to ``log_path``."""
    command = [*lowcarb_command(), "serve", "--host", "127.0.0.1", *flags]
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def start_ready(
    logs: Path, *flags: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``lowcarb serve --port <free> *flags`` until ``/readyz`` answers 200 (synced); returns the
    process, which the caller owns and stops, and its base URL."""
    port = free_port()
    log_path = logs / f"serve-{port}.log"
    process = spawn(log_path, "--port", str(port), *flags, env=env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200

    try:
        wait_ready(process, log_path, ready, f"/readyz on {port}")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, base


class ServeProcesses:
    """The ``lowcarb serve`` processes one test (or module) started; logs under ``logs``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *flags: str, log_name: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        """``lowcarb serve --host 127.0.0.1 *flags``; returns the process and its log file
        (``log_name`` under ``logs``, appended to; by default one file per process)."""
        log_path = self.logs / (log_name or f"serve-{len(self.processes)}.log")
        process = spawn(log_path, *flags)
        self.processes.append(process)
        return process, log_path

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def serve_processes(logs: Path) -> Iterator[ServeProcesses]:
    """A :class:`ServeProcesses` whose processes are all stopped on exit."""
    procs = ServeProcesses(logs)
    try:
        yield procs
    finally:
        procs.close()


def wait_ready(
    process: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool], what: str
) -> None:
    """Poll ``ready()`` (exceptions count as not ready) until it is true, or fail the test with
    the process's output if it exits or ``STARTUP_SECONDS`` pass."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            pytest.fail(f"lowcarb serve exited with {process.returncode}:\n{output}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.05)
    output = log.read_text(errors="replace")
    pytest.fail(f"lowcarb serve: {what} not within {STARTUP_SECONDS:.0f} s:\n{output}")


def listening(port: int) -> Callable[[], bool]:
    """A readiness probe: the loopback ``port`` accepts connections."""

    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    return probe
