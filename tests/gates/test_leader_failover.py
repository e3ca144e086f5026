"""HA: two real ``lowcarb gates run --leader-elect`` processes against the fake API server.

One leads and releases gated pods while the other stands by; the leader is killed with SIGKILL
(no chance to hand the Lease over); the standby leads within the lease time and releases the
pods that arrived meanwhile; no pod's gate is ever patched twice. The processes use different
bearer tokens, so every request the fake server records names the replica that sent it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from scheduler.gates.leader import JITTER
from scheduler.gates.lease import LEASE_PERMISSIONS
from tests.support.deploy import running_lowcarb
from tests.support.fakeapi import (
    FakeApiServer,
    LeaseStore,
    PodStore,
    Reply,
    WatchReply,
    fixture,
    lowcarb_command,
    rbac_checked,
    recorded_pod,
    write_kubeconfig,
)

NS = "lowcarb-system"
LEASE = "lowcarb-gates"
DURATION = 3.0  # --lease-duration: renew deadline 2 s, retry period 0.4 s
RETRY = DURATION * 2 / 15
CREATED = datetime.fromisoformat(recorded_pod()["metadata"]["creationTimestamp"])
OTHER = ["other.example/gate"]  # what a released pod keeps (the fixture pod has two gates)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked(LEASE_PERMISSIONS) as server:
        yield server


def wait_for(what: str, cond: Callable[[], bool], procs: list[Replica], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        for p in procs:
            assert p.proc.poll() is None, f"{p.name} exited:\n{p.log_text()}"
        assert time.monotonic() < end, f"{what}: not within {timeout:g}s\n" + "\n".join(
            p.log_text() for p in procs
        )
        time.sleep(0.05)


class Replica:
    """One ``lowcarb gates run --leader-elect`` process with its own token and log."""

    def __init__(self, name: str, api: FakeApiServer, tmp: Path) -> None:
        self.name = name
        self.token = f"token-{name}"
        self.log_path = tmp / f"{name}.log"
        kubeconfig = write_kubeconfig(tmp / f"{name}.kubeconfig", api.url, token=self.token)
        args = ["gates", "run", "--kubeconfig", str(kubeconfig), "--tick", "1"]
        args += ["--leader-elect", "--lease-namespace", NS, "--lease-duration", str(DURATION)]
        # a day after the pods were created their 12 h deadline has passed: every gated pod
        # is released on the leader's first pass, whatever the carbon forecast says
        env = {**os.environ, "LOWCARB_NOW": (CREATED + timedelta(days=1)).isoformat()}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*lowcarb_command(), *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )

    @property
    def auth(self) -> str:
        return f"Bearer {self.token}"

    def log_text(self) -> str:
        return f"--- {self.name} ---\n" + self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_standby_leads_after_the_leader_is_killed_and_no_pod_is_released_twice(
    api: FakeApiServer, tmp_path: Path
) -> None:
    pods = PodStore(api).install()
    leases = LeaseStore(api, NS).install(LEASE)
    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    ann = {"lowcarb.dev/deadline": "12h", "lowcarb.dev/expected-duration": "2h"}

    def add(names: list[str]) -> None:
        for name in names:
            pods.add_pod(name, annotations=ann)

    def released(names: list[str]) -> Callable[[], bool]:
        return lambda: all(pods.gates(n) == OTHER for n in names)

    def sent_by(replica: Replica, method: str, prefix: str = "") -> list[str]:
        return [
            r.path
            for r in api.seen(method)
            if r.authorization == replica.auth and r.path.startswith(prefix)
        ]

    early, mid, late = (["early-0", "early-1", "early-2"], ["mid-0", "mid-1"], ["late-0", "late-1"])
    add(early)
    replicas: list[Replica] = []
    try:
        a = Replica("a", api, tmp_path)
        replicas.append(a)
        wait_for("a leads", lambda: leases.holder(LEASE) is not None, replicas, 60)
        wait_for("a releases the early pods", released(early), replicas, 30)

        b = Replica("b", api, tmp_path)
        replicas.append(b)
        lease_path = f"{leases.collection}/{LEASE}"
        wait_for("b polls the Lease", lambda: len(sent_by(b, "GET", lease_path)) >= 3, replicas, 60)
        add(mid)  # both run; only the leader acts
        wait_for("a releases the mid pods", released(mid), replicas, 30)
        time.sleep(4 * RETRY)  # b keeps polling meanwhile
        assert leases.holder(LEASE) is not None
        assert {w.authorization for w in leases.writes} == {a.auth}  # b never wrote the Lease
        assert sent_by(b, "PATCH") == [] and sent_by(b, "POST", "/apis/events") == []

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=30)
        killed = time.monotonic()
        last_a = leases.writes[-1]
        add(late)  # no leader right now: these wait for b
        wait_for("b releases the late pods", released(late), [b], 30)

        takeover = next(w for w in leases.writes if w.authorization == b.auth)
        assert takeover.verb == "update" and takeover.transitions == 1
        assert takeover.holder not in (None, last_a.holder)
        # never before a's lease ran out, as b's own clock measured it ...
        assert takeover.at - last_a.at >= DURATION
        # ... and within the lease time after the kill, give or take b's poll period (twice:
        # the renewal it last saw and the poll that finds the Lease expired) and a slow machine
        assert takeover.at - killed <= DURATION + 2 * RETRY * (1 + JITTER) + 1.0

        # every gated pod: exactly one gate-removal patch, from the replica leading at the time
        patches = Counter(r.path.rsplit("/", 1)[1] for r in api.seen("PATCH"))
        assert patches == Counter({name: 1 for name in early + mid + late})
        assert Counter(name for name, _ in pods.patches_applied) == patches
        by = {r.path.rsplit("/", 1)[1]: r.authorization for r in api.seen("PATCH")}
        assert {by[n] for n in early + mid} == {a.auth} and {by[n] for n in late} == {b.auth}

        # a clean stop of the new leader hands the Lease back (no holder) for the next replica
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(timeout=30) == 0, b.log_text()
        final = leases.writes[-1]
        assert final.authorization == b.auth and final.holder is None
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.slow
def test_serve_runs_the_gate_controller_only_once_it_holds_the_lease(
    api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lowcarb serve`` in cluster mode with ``--leader-elect``, the way the Deployment runs it."""
    pods = PodStore(api).install()
    leases = LeaseStore(api, NS).install(LEASE)
    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    pods.add_pod("waiting", annotations={"lowcarb.dev/deadline": "12h"})
    # another replica holds the Lease and then goes silent (it never renews)
    held = (
        fixture("lease-create.request.json")
        .replace(b"lowcarb-0_6d0e4c1a", b"gone-replica")
        .replace(b'"leaseDurationSeconds":15', b'"leaseDurationSeconds":%d' % DURATION)
    )
    with httpx.Client(base_url=api.url) as http:
        assert http.post(leases.collection, content=held).status_code == 201
    monkeypatch.setenv("LOWCARB_NOW", (CREATED + timedelta(days=1)).isoformat())
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, token="serve")
    args = ["--kubeconfig", str(kubeconfig), "--leader-elect", "--lease-namespace", NS]
    args += ["--lease-duration", str(DURATION)]
    with running_lowcarb(args, tmp_path / "serve.log"):
        end = time.monotonic() + 60
        while pods.gates("waiting") != OTHER:
            assert time.monotonic() < end, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.05)
    created, takeover = leases.writes[0], leases.writes[1]
    assert created.holder == "gone-replica" and takeover.authorization == "Bearer serve"
    assert takeover.at - created.at >= DURATION  # waited out the silent holder's lease
    (patch,) = api.seen("PATCH")
    assert patch.authorization == "Bearer serve"
    assert leases.writes[-1].holder is None  # SIGTERM: controller stopped, Lease handed back


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["serve", "--leader-elect"],
            "lowcarb: error: --leader-elect: elects the gate controller, which runs only in "
            "cluster mode; add --in-cluster or --kubeconfig, or drop --leader-elect",
        ),
        (
            ["gates", "run", "--leader-elect", "--lease-duration", "0.5"],
            "lowcarb: error: --lease-duration: the lease duration must be at least 1 s, got 0.5 s;"
            " give e.g. 15",
        ),
        (
            ["gates", "run", "--leader-elect", "--lease-name", " "],
            "lowcarb: error: --lease-name: is empty; give a Lease name such as lowcarb-gates",
        ),
    ],
    ids=["serve-without-cluster", "lease-too-short", "lease-name-empty"],
)
def test_leader_election_mistakes_are_one_line_usage_errors(
    args: list[str], line: str, tmp_path: Path
) -> None:
    if args[0] == "gates":
        args += ["--kubeconfig", str(write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1"))]
    out = subprocess.run(
        [*lowcarb_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [line]
