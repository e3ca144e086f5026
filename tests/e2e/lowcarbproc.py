"""lowcarb as the e2e tests see it: ``lowcarb serve`` run as a subprocess through its CLI
(restartable on the same port, killable with SIGKILL) and read through its HTTP endpoints, plus
:class:`DelayProxy`, an HTTP forwarder that can hold chosen extender verbs back."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.procs import Proc, free_port, wait_until


def lowcarb_executable() -> str:
    exe = Path(sys.executable).with_name("lowcarb")
    if exe.exists():
        return str(exe)
    found = shutil.which("lowcarb")
    if found is None:
        raise RuntimeError("lowcarb is not installed in this environment: pip install -e .")
    return found


@dataclass(eq=False)
class Lowcarb:
    """``lowcarb serve`` in cluster mode as a subprocess (restartable on the same port)."""

    workdir: Path
    kubeconfig: Path
    policy: Path | None = None
    ledger: Path | None = None
    port: int = field(default_factory=free_port)
    name: str = "lowcarb"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    proc: Proc | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [
            lowcarb_executable(),
            "serve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--kubeconfig={self.kubeconfig}",
            "--log-level=info",
        ]
        if self.policy is not None:
            argv.append(f"--policy={self.policy}")
        if self.ledger is not None:
            argv.append(f"--ledger={self.ledger}")
        return argv + self.extra_args

    def start(self, wait: bool = True) -> Lowcarb:
        self.starts += 1
        self.proc = Proc(self.name, self.argv(), self.workdir / f"{self.name}.log", env=self.env)
        self.proc.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            self.proc.check_alive()
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        wait_until(f"{self.name} /readyz", ready, timeout, interval=0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total


class DelayProxy:
    """HTTP forwarder in front of an extender that holds chosen verbs for a while.

    kube-scheduler sends ``bind`` from an asynchronous binding cycle while it already schedules
    the next pod; a delay on ``/bind`` makes "the next pod's filter/prioritize arrives before
    this pod's bind" certain instead of a matter of luck.
    """

    def __init__(self, target: str, delays: Mapping[str, float]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.target = target
        self.delays = dict(delays)
        self.client = httpx.Client(base_url=target, timeout=30, trust_env=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                verb = self.path.rstrip("/").rsplit("/", 1)[-1]
                time.sleep(proxy.delays.get(verb, 0.0))
                try:
                    resp = proxy.client.post(
                        self.path,
                        content=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "")},
                    )
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
