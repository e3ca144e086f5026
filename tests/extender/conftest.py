"""Serving helpers for the HTTP tests: an app under uvicorn on 127.0.0.1 in this event loop, and
``lowcarb serve`` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.fakeapi import free_port, lowcarb_command

STARTUP_SECONDS = 60.0


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its base URL."""
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


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, **kwargs: Any) -> None:
    """Until ``url`` answers at all (any status), or fail with the process's output."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"lowcarb serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1.0, **kwargs)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"{url} did not answer within {STARTUP_SECONDS:.0f} s:\n{log.read_text()}")


@pytest.fixture
def lowcarb_serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``lowcarb_serve(*flags)``: start ``lowcarb serve --host 127.0.0.1 *flags``; stopped after
    the test. The output goes to ``tmp_path/serve.log``."""
    processes: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")

    def start(*flags: str) -> subprocess.Popen[bytes]:
        command = [*lowcarb_command(), "serve", "--host", "127.0.0.1", *flags]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()
