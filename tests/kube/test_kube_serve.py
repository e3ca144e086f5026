"""``lowcarb serve --kubeconfig``: ready only once the node and pod cache synced (real process)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scheduler import kube
from tests.support.fakeapi import (
    FakeApiServer,
    Recorded,
    Reply,
    WatchReply,
    fixture,
    free_port,
    lowcarb_command,
    rbac_checked,
    write_kubeconfig,
)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked() as server:  # every call covered by the RBAC deploy/ ships
        yield server


def wait_status(
    url: str, want: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lowcarb serve exited: {log.read_text()[-2000:]}")
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == want:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {want} (last: {last and last.status_code})")


@pytest.mark.slow
def test_serve_is_ready_only_after_cache_sync(api: FakeApiServer, tmp_path: Path) -> None:
    release = threading.Event()

    def slow_pod_list(req: Recorded) -> Reply:
        release.wait(30)  # the API server is slow to answer the first pod list
        return Reply(200, fixture("pods-list-assigned-nonterminal.json"))

    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/pods", slow_pod_list, watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    api.add("GET", "/api/v1/pods", WatchReply([]), watch=True)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, token="serve-token")
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*lowcarb_command(), "serve", "--port", str(port), "--kubeconfig", str(kubeconfig)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_status(f"{base}/healthz", 200, proc, log_path)
        not_ready = httpx.get(f"{base}/readyz", timeout=2)
        assert not_ready.status_code == 503
        assert any(r.path == "/api/v1/pods" for r in api.requests)
        release.set()
        wait_status(f"{base}/readyz", 200, proc, log_path)
        # the cache now answers node-name requests: known names pass, unknown ones fail
        pod = json.loads(fixture("pods-get.json"))
        pod["spec"].pop("nodeName")
        args = {"Pod": pod, "NodeNames": ["usw2-a-gpu", "no-such-node"]}
        answer = httpx.post(f"{base}/filter", json=args, timeout=5).json()
        failed = {**answer.get("FailedNodes", {}), **answer.get("FailedAndUnresolvableNodes", {})}
        assert "no-such-node" in failed
        assert "usw2-a-gpu" in (answer.get("NodeNames") or [])
        # the admission webhook is served too (default policy: no class opts in, no patch)
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE"},
        }
        hook = httpx.post(f"{base}/mutate/carbon-window", json=review, timeout=5).json()
        assert hook["response"] == {"uid": "u1", "allowed": True}
        # the gate controller runs in cluster mode too: it lists the unbound pods
        deadline = time.monotonic() + 10
        while not any(r.param("fieldSelector") == kube.UNASSIGNED for r in api.requests):
            assert time.monotonic() < deadline, "the gate controller never listed gated pods"
            time.sleep(0.05)
    finally:
        release.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert all(r.authorization == "Bearer serve-token" for r in api.requests)
