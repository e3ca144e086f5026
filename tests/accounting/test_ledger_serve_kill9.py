"""kill -9 of the real ``lowcarb serve`` during a burst of binds loses no acknowledged decision,
with the ledger in a SQLite file or in PostgreSQL.

The server runs in cluster mode against the fake Kubernetes API (recorded kube-apiserver bodies;
the pod store answers Bindings and pod reads), kube-scheduler's prioritize + bind calls are
replayed concurrently, and the process is killed with SIGKILL mid-burst. Every bind answered
without error had its intent durably committed before its Binding; once the server is back on the
same ledger, every one of them has its placement row (rows the kill caught in flight are
recovered from the pods' decision annotations), and new decisions append without duplicates.
"""

from __future__ import annotations

import asyncio
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

from carbon.accounting.ledger import IntentRecord, LedgerTarget, open_reader, read_records
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


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    store = PodStore(server)  # the pods the bursts bind (Binding, GET), by uid as name
    for prefix, count in (("first", 400), ("second", 200)):
        for i in range(count):
            store.add_pod(f"{prefix}-{i:06d}", gates=[], uid=f"{prefix}-{i:06d}", notify=False)
    store.install()
    server.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    server.add(
        "GET", "/api/v1/pods", Reply(200, fixture("pods-list-assigned-nonterminal.json")),
        watch=False,
    )  # fmt: skip
    server.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    server.add("GET", "/api/v1/pods", WatchReply([]), watch=True)
    yield server
    server.stop()


def _serve(
    tmp_path: Path, api: FakeApiServer, ledger: LedgerTarget
) -> tuple[subprocess.Popen[bytes], str]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    flags = ["--kubeconfig", str(kubeconfig), "--ledger", str(ledger), "--log-level", "warning"]
    return start_ready(tmp_path, *flags)


def _pod(uid: str) -> dict[str, object]:
    pod = json.loads(fixture("pods-get.json"))
    pod = copy.deepcopy(pod)
    pod["metadata"]["uid"] = pod["metadata"]["name"] = uid
    pod["spec"].pop("nodeName", None)
    for c in pod["spec"]["containers"]:  # small CPU pods: capacity never runs out mid-burst
        c["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    return pod


async def _place(client: httpx.AsyncClient, base: str, uid: str) -> bool:
    """kube-scheduler's prioritize then bind for one pod; True when the bind was acknowledged."""
    args = {"Pod": _pod(uid), "NodeNames": NODES}
    prio = (await client.post(f"{base}/prioritize", json=args)).json()
    best = max(prio, key=lambda h: h["Score"])["Host"]
    bind = {"PodName": uid, "PodNamespace": "e2e", "PodUID": uid, "Node": best}
    resp = await client.post(f"{base}/bind", json=bind)
    return resp.status_code == 200 and not resp.json().get("Error")


async def _burst(base: str, prefix: str, kill_after: int | None, pid: int) -> set[str]:
    acked: set[str] = set()
    killed = asyncio.Event()
    counter = iter(range(10**6))

    async def worker(client: httpx.AsyncClient) -> None:
        while not killed.is_set():
            uid = f"{prefix}-{next(counter):06d}"
            try:
                ok = await _place(client, base, uid)
            except (httpx.TransportError, ValueError):
                return  # the server is gone
            if ok:
                acked.add(uid)
            if kill_after is not None and len(acked) >= kill_after and not killed.is_set():
                os.kill(pid, signal.SIGKILL)  # mid-burst: other workers have requests in flight
                killed.set()
            if kill_after is None and len(acked) >= 40:
                killed.set()

    async with httpx.AsyncClient(timeout=20) as client:
        await asyncio.gather(*(worker(client) for _ in range(12)))
    return acked


def _placements(path: LedgerTarget) -> list[str]:
    if isinstance(path, Path):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    reader = open_reader(path)
    uids = [str(r[0]) for r in reader.execute("SELECT uid FROM placement")]
    reader.close()
    return uids


def _intents(path: LedgerTarget) -> set[str]:
    conn = open_reader(path)
    try:
        return {i.uid for i in read_records(conn, IntentRecord) if i.event == "bind"}
    finally:
        conn.close()


def _wait_for_rows(path: LedgerTarget, uids: set[str], timeout: float = 30.0) -> list[str]:
    """The placement uids once ``uids`` all have a row (the restart settles the intents)."""
    deadline = time.monotonic() + timeout
    while not uids <= set(stored := _placements(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stored


def _starts(path: LedgerTarget) -> list[tuple[str, float]]:
    reader = open_reader(path)
    rows = [(str(u), float(at)) for u, at in reader.execute(
        "SELECT uid, at FROM lifecycle WHERE event = 'start'"
    )]  # fmt: skip
    reader.close()
    return rows


@pytest.mark.slow
async def test_kill9_of_serve_loses_no_acknowledged_bind(
    api: FakeApiServer, tmp_path: Path, target: LedgerTarget
) -> None:
    ledger = target  # a SQLite file, or a database of the tests' PostgreSQL server
    proc, base = _serve(tmp_path, api, ledger)
    try:
        acked = await _burst(base, "first", kill_after=150, pid=proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 150
    intents = _intents(ledger)
    assert acked <= intents, f"binds without an intent: {sorted(acked - intents)[:5]}"
    assert set(_placements(ledger)) <= intents
    # the Running pod of the relisted fixture (web-cpu) has its start of running recorded
    running = json.loads(fixture("pods-list-assigned-nonterminal.json"))["items"]
    web = next(p for p in running if p["status"]["phase"] == "Running")
    started = _starts(ledger)
    assert [u for u, _ in started] == [web["metadata"]["uid"]]

    # restart on the same ledger: recovery from the WAL, intents settled against the API server,
    # new decisions append, no duplicates
    proc, base = _serve(tmp_path, api, ledger)
    try:
        stored = _wait_for_rows(ledger, acked)
        assert acked <= set(stored), f"lost acknowledged binds: {sorted(acked - set(stored))[:5]}"
        again = await _burst(base, "second", kill_after=None, pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    after = _placements(ledger)
    assert len(after) == len(set(after))
    assert set(stored) | again <= set(after)
    # the restarted watch relists the same Running pod: its start is not written twice
    assert _starts(ledger) == started
