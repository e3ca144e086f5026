"""Serving helpers for the HTTP tests: an app under uvicorn on 127.0.0.1 in this event loop, and
``lowcarb serve`` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.fakeapi import free_port
from tests.support.serve import serve_processes, wait_ready


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
    wait_ready(process, log, lambda: httpx.get(url, timeout=1.0, **kwargs) is not None, url)


@pytest.fixture
def lowcarb_serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``lowcarb_serve(*flags)``: start ``lowcarb serve --host 127.0.0.1 *flags``; stopped after
    the test. The output goes to ``tmp_path/serve.log``."""
    with serve_processes(tmp_path) as procs:
        yield lambda *flags: procs.start(*flags, log_name="serve.log")[0]
