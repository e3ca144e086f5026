"""``lowcarb gates plan`` as a real process against the fake API server (dry: changes nothing)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scheduler import kube
from scheduler.gates.request import GATE
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Recorded,
    Reply,
    WatchReply,
    fixture,
    lowcarb_command,
    rbac_checked,
    recorded_pod,
    write_kubeconfig,
)

CREATED = datetime.fromisoformat(recorded_pod()["metadata"]["creationTimestamp"])


def as_of(after_creation: timedelta) -> dict[str, str]:
    """Environment running ``lowcarb`` as if now were this long after the fixture pod's creation."""
    return {**os.environ, "LOWCARB_NOW": (CREATED + after_creation).isoformat()}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked() as server:  # every call covered by the RBAC deploy/ ships
        yield server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("after_creation", "why"),
    [
        # the embedded default policy serves static annual means: no forecast, so fail-open
        (timedelta(minutes=1), "fail-open"),
        # 12 h deadline: a day later the pod is released whatever the forecast says
        (timedelta(days=1), f"deadline {(CREATED + timedelta(hours=12)):%Y-%m-%d %H:%M}Z has"),
    ],
    ids=["just-created", "a-day-later"],
)
def test_gates_plan_lists_gated_pods_and_changes_nothing(
    api: FakeApiServer, tmp_path: Path, after_creation: timedelta, why: str
) -> None:
    store = PodStore(api).install()
    ann = {"lowcarb.dev/deadline": "12h", "lowcarb.dev/expected-duration": "2h"}
    store.add_pod("gated-train", annotations=ann)
    store.add_pod("not-ours", annotations=ann, gates=["other.example/gate"])

    def assigned(req: Recorded) -> bool:
        return req.param("fieldSelector") == kube.ASSIGNED_NONTERMINAL

    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    pods = fixture("pods-list-assigned-nonterminal.json")
    api.add("GET", "/api/v1/pods", Reply(200, pods), watch=False, match=assigned)
    api.add("GET", "/api/v1/pods", WatchReply([]), watch=True, match=assigned)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    out = subprocess.run(
        [*lowcarb_command(), "gates", "plan", "--kubeconfig", str(kubeconfig), "--json"],
        capture_output=True,
        timeout=60,
        check=False,
        env=as_of(after_creation),
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
    assert [r["pod"] for r in rows] == ["e2e/gated-train"]  # only pods with our gate
    assert rows[0]["decision"] == "release"
    assert why in rows[0]["why"]
    assert api.seen("PATCH") == [] and api.seen("POST") == []
    assert store.gates("gated-train") == [GATE, "other.example/gate"]


@pytest.mark.slow
def test_gates_run_dry_run_stops_cleanly_on_sigterm(api: FakeApiServer, tmp_path: Path) -> None:
    import signal
    import time

    store = PodStore(api).install()
    store.add_pod("gated-train")
    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [*lowcarb_command(), "gates", "run", "--kubeconfig", str(kubeconfig), "--dry-run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=as_of(timedelta(minutes=1)),
    )
    try:
        deadline = time.monotonic() + 30
        while not any(r.param("fieldSelector") == kube.UNASSIGNED for r in api.requests):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "lowcarb gates run never listed gated pods"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert api.seen("PATCH") == []  # dry run
    assert store.gates("gated-train") == [GATE, "other.example/gate"]


def _serve_gated_pod(api: FakeApiServer, tmp_path: Path) -> Path:
    """The fake API server with one gated pod and the fixture nodes; returns the kubeconfig."""
    store = PodStore(api).install()
    ann = {"lowcarb.dev/deadline": "12h", "lowcarb.dev/expected-duration": "2h"}
    store.add_pod("gated-train-with-a-long-name", annotations=ann)

    def assigned(req: Recorded) -> bool:
        return req.param("fieldSelector") == kube.ASSIGNED_NONTERMINAL

    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    pods = fixture("pods-list-assigned-nonterminal.json")
    api.add("GET", "/api/v1/pods", Reply(200, pods), watch=False, match=assigned)
    api.add("GET", "/api/v1/pods", WatchReply([]), watch=True, match=assigned)
    return write_kubeconfig(tmp_path / "kubeconfig", api.url)


@pytest.mark.slow
def test_gates_plan_table_fits_80_columns_wide_and_csv_have_every_column(
    api: FakeApiServer, tmp_path: Path
) -> None:
    kubeconfig = _serve_gated_pod(api, tmp_path)
    env = {**as_of(timedelta(minutes=1)), "COLUMNS": "80"}

    def plan(*extra: str) -> str:
        out = subprocess.run(
            [*lowcarb_command(), "gates", "plan", "--kubeconfig", str(kubeconfig), *extra],
            capture_output=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        return out.stdout.decode()

    narrow = plan()
    assert "gated-train" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert "fail-open" in narrow and "now g/kWh" not in narrow  # fewer columns by default
    wide = plan("--wide")
    for head in ("pod", "group", "zone", "decision", "release", "now g/kWh", "then g/kWh", "why"):
        assert head in wide, (head, wide)
    text = plan("--output", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, text
    assert [r["pod"] for r in rows] == ["e2e/gated-train-with-a-long-name"], text
    assert set(rows[0]) >= {"group", "zone", "decision", "release", "mean_now", "mean_at", "why"}
    assert rows[0]["decision"] == "release"
    assert [json.loads(line)["pod"] for line in plan("-o", "json").splitlines()] == [
        "e2e/gated-train-with-a-long-name"
    ]
