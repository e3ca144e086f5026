"""``lowcarb gates run --ledger`` takes what ``serve --ledger`` takes: a SQLite file or a
postgresql:// URL (one parser, carbon.accounting.target), and writes its gate records there."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from carbon.accounting.ledger import GateRecord, LedgerTarget, open_reader, read_records
from scheduler.names import GATE
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Reply,
    WatchReply,
    fixture,
    write_kubeconfig,
)

LOWCARB = Path(sys.executable).parent / "lowcarb"


def test_gates_run_writes_gate_records_to_either_backend(
    target: LedgerTarget, tmp_path: Path
) -> None:
    api = FakeApiServer().start()
    try:
        store = PodStore(api).install()
        # an unreadable deadline: the controller releases the pod at once and records the hold
        store.add_pod("gated-train", annotations={"lowcarb.dev/deadline": "soon"})
        api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
        api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        command = [str(LOWCARB), "gates", "run", "--kubeconfig", str(kubeconfig)]
        command += ["--ledger", str(target), "--tick", "0.5"]
        with (tmp_path / "run.log").open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while "gated-train" in store.pods and GATE in store.gates("gated-train"):
                    assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
                    assert time.monotonic() < deadline, "lowcarb gates run never released"
                    time.sleep(0.1)
                time.sleep(1.0)  # the record is written right after the release
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        api.stop()
    reader = open_reader(target)
    try:
        records = list(read_records(reader, GateRecord))
    finally:
        reader.close()
    assert [(r.namespace, r.name) for r in records] == [("e2e", "gated-train")]
