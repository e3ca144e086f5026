"""kill -9 of the real ``lowcarb serve`` at each step of a bind: every bound pod ends up with
exactly one placement row once lowcarb is back.

The server runs in cluster mode with a ledger against the fake API server's pod store, whose
Binding copies the decision annotations onto the pod as kube-apiserver does. kube-scheduler's
prioritize + bind calls are replayed one pod at a time; ``LOWCARB_CRASH_AT=<step>:3`` (a test-only
hook) makes the process SIGKILL itself when the third bind reaches ``before-binding`` (intent
committed, no Binding), ``after-binding`` (Binding created, no row) or ``after-commit`` (row
committed). The crashed pod may also finish (leaving the watch of bound pods) or be deleted
while lowcarb is down. lowcarb is restarted on the same ledger, kube-scheduler retries what is
still unbound, and then the ledger must hold exactly one row per bound pod: recovered rows from
the pod's own decision annotation, the others as the bind wrote them.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from carbon.accounting.ledger import open_intents, open_reader
from scheduler.names import ANN_DECISION
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Reply,
    WatchReply,
    fixture,
    write_kubeconfig,
)
from tests.support.serve import start_ready

NODES = ["euc1-a-gpu", "euc1-b-cpu", "use1-a-gpu", "use1-b-cpu", "usw2-a-gpu", "usw2-b-gpu"]
NS = "e2e"
PODS = [f"train-{i}" for i in range(5)]
SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}}


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, PodStore]]:
    server = FakeApiServer().start()
    store = PodStore(server, namespace=NS, selectors=True)
    for name in PODS:
        pod = store.add_pod(name, gates=[], uid=f"uid-{name}")
        for c in pod["spec"]["containers"]:
            c["resources"] = copy.deepcopy(SMALL)
    store.install()
    server.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    server.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    yield server, store
    server.stop()


def serve(
    tmp: Path, api: FakeApiServer, ledger: Path, crash_at: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    kubeconfig = write_kubeconfig(tmp / "kubeconfig", api.url)
    env = {k: v for k, v in os.environ.items() if k != "LOWCARB_CRASH_AT"}
    if crash_at:
        env["LOWCARB_CRASH_AT"] = crash_at
    flags = ["--kubeconfig", str(kubeconfig), "--ledger", str(ledger), "--log-level", "warning"]
    return start_ready(tmp, *flags, env=env)


def place(base: str, store: PodStore, name: str) -> str:
    """kube-scheduler's prioritize then bind for one pod; the bind's Error ('' when bound)."""
    pod = copy.deepcopy(store.pods[name])
    pod["spec"].pop("nodeName", None)
    prio = httpx.post(f"{base}/prioritize", json={"Pod": pod, "NodeNames": NODES}, timeout=10)
    best = max(prio.json(), key=lambda h: h["Score"])["Host"]
    bind = {"PodName": name, "PodNamespace": NS, "PodUID": pod["metadata"]["uid"], "Node": best}
    answer = httpx.post(f"{base}/bind", json=bind, timeout=10).json()
    return str(answer.get("Error") or "")


def placements(ledger: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(ledger)
    try:
        return conn.execute("SELECT uid, note FROM placement ORDER BY seq").fetchall()
    finally:
        conn.close()


def bound(store: PodStore) -> dict[str, str]:
    """uid -> name of every pod the API server has bound."""
    return {
        p["metadata"]["uid"]: name for name, p in store.pods.items() if p["spec"].get("nodeName")
    }


def settled(ledger: Path, store: PodStore, timeout: float = 30.0) -> list[tuple[str, str | None]]:
    """The placement rows once every bound pod has one (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = placements(ledger)
        if set(bound(store)) <= {uid for uid, _ in rows} or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "meanwhile"),
    [
        ("before-binding", "nothing"),
        ("after-binding", "nothing"),
        ("after-binding", "finished"),
        ("after-binding", "deleted"),
        ("after-commit", "nothing"),
    ],
)
def test_kill9_at_each_bind_step_leaves_exactly_one_row_per_bound_pod(
    api: tuple[FakeApiServer, PodStore], tmp_path: Path, step: str, meanwhile: str
) -> None:
    server, store = api
    ledger = tmp_path / "ledger.sqlite"
    proc, base = serve(tmp_path, server, ledger, crash_at=f"{step}:3")
    try:
        assert place(base, store, "train-0") == ""
        assert place(base, store, "train-1") == ""
        with pytest.raises(httpx.TransportError):  # the third bind kills the server
            place(base, store, "train-2")
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    crashed = store.pods["train-2"]
    is_bound = bool(crashed["spec"].get("nodeName"))
    assert is_bound == (step != "before-binding")
    if is_bound:  # bound with the decision carried by the Binding, in the same write
        decision = json.loads(crashed["metadata"]["annotations"][ANN_DECISION])
        assert decision["uid"] == "uid-train-2" and decision["node"] == crashed["spec"]["nodeName"]
    rows = placements(ledger)
    assert ("uid-train-2" in {u for u, _ in rows}) == (step == "after-commit")
    if meanwhile == "finished":
        store.set_phase("train-2", "Succeeded")  # it left the watch of bound, running pods
    elif meanwhile == "deleted":
        store.delete_pod("train-2")

    proc, base = serve(tmp_path, server, ledger)
    try:
        if not is_bound:
            assert place(base, store, "train-2") == ""  # kube-scheduler retries it
        assert place(base, store, "train-3") == ""
        rows = settled(ledger, store)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it when done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = placements(ledger)  # after a clean stop: everything queued is in
    uids = [u for u, _ in rows]
    assert len(uids) == len(set(uids)), f"duplicate rows: {uids}"
    assert set(uids) == set(bound(store)), (uids, bound(store))
    recovered = {u for u, note in rows if (note or "").startswith("recovered")}
    assert recovered == (
        {"uid-train-2"} if step == "after-binding" and meanwhile != "deleted" else set()
    )
    conn = open_reader(ledger)
    try:
        assert open_intents(conn) == []  # every intent settled: by a row, or as gone
    finally:
        conn.close()
