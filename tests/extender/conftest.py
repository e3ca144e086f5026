"""Serving helpers for the HTTP tests: an app under uvicorn on 127.0.0.1 in this event loop, and
``lowcarb serve`` as a real process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.serve import serve_processes, wait_ready


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, **kwargs: Any) -> None:
    """Until ``url`` answers at all (any status), or fail with the process's output."""
    wait_ready(process, log, lambda: httpx.get(url, timeout=1.0, **kwargs) is not None, url)


@pytest.fixture
def lowcarb_serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``lowcarb_serve(*flags)``: start ``lowcarb serve --host 127.0.0.1 *flags``; stopped after
    the test. The output goes to ``tmp_path/serve.log``."""
    with serve_processes(tmp_path) as procs:
        yield lambda *flags: procs.start(*flags, log_name="serve.log")[0]
