"""The temporal-shifting scenario, driven by clock time through the real API server.

Started by the session (``conftest.gate_scenario``) right after lowcarb A is up, because its pods
wait in real time; ``test_gates.py`` checks the outcome near the end of the session. The knobs
that keep the waits to a couple of minutes are the pods' own annotations (a deadline of minutes,
an expected duration of one minute) and crafted carbon series with 20-second steps, replayed
with their own timestamps (``replay`` provider, ``shift: false``):

* ``E2E-PLANNED``: 400 gCO2e/kWh now, 80 from ``clean_at`` (about two minutes ahead) on;
* ``E2E-LATEST``: 600 falling by 20 every step, so the best start is always the latest one.

Pods (all ``schedulerName: lowcarb``, each pinned to its zone by its GPU model):

=========  =====================================  ==============================================
planned    our gate, deadline 2h, 10m run          held, released about ``clean_at - 60 s``
latest     our gate, deadline 8m30s, 1m run        held, released at its latest safe start
nofc       our gate, zone with no forecast         released fail-open (after the start grace)
tight      our gate, run does not fit the deadline  released at once
mixed      our gate + someone else's               only our gate removed; stays gated
other      someone else's gate only                never touched
=========  =====================================  ==============================================

A poller thread records when each pod lost our gate and when it was bound.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane import PRODUCT_LABEL, KubeApi, Lowcarb, gpu_node, gpu_pod, node_of
from e2e_support import GATE, step_series

OTHER_GATE = "example.com/quota-check"
STEP_S = 20.0
PLANNED_LEAD_S = 120.0  # the cleaner period starts at least this long after the pods
LATEST_START_S = 150.0  # latest safe start of the "latest" pod, after its creation
MARGIN_S = 300.0  # the controller's safety margin before the latest start
PRODUCTS = {
    "planned": "NVIDIA-E2E-PLANNED",
    "latest": "NVIDIA-E2E-LATEST",
    "static": "NVIDIA-E2E-STATIC",
}


@dataclass
class GateScenario:
    api: KubeApi
    replay_root: Path
    scheduler: str
    lowcarb: Lowcarb
    namespace: str = "e2e-gates"
    created_at: float = 0.0
    clean_at: float = 0.0
    latest_start: float = 0.0
    released_at: dict[str, float] = field(default_factory=dict)
    bound_at: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    poll_errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        now = time.time()
        self.clean_at = math.ceil((now + PLANNED_LEAD_S + 10) / STEP_S) * STEP_S
        clean_at = self.clean_at
        step_series(self.replay_root, "E2E-PLANNED", now, lambda t: 400.0 if t < clean_at else 80.0)
        step_series(
            self.replay_root,
            "E2E-LATEST",
            now,
            lambda t: max(20.0, 600.0 - 20.0 * max(0.0, (t - now) // STEP_S)),
        )
        api = self.api
        api.ensure_namespace(self.namespace)
        api.create_nodes(
            [
                gpu_node("gate-planned", region="e2e-planned", product=PRODUCTS["planned"]),
                gpu_node("gate-latest", region="e2e-latest", product=PRODUCTS["latest"]),
                # IN-WE: static annual mean only, no forecast anywhere in the chain
                gpu_node("gate-static", region="ap-south-1", product=PRODUCTS["static"]),
            ]
        )
        time.sleep(1.0)  # lowcarb's node watch
        self.created_at = time.time()
        self.latest_start = self.created_at + LATEST_START_S
        latest_deadline = int(LATEST_START_S + 60 + MARGIN_S)
        specs: dict[str, dict[str, Any]] = {
            "planned": {"zone": "planned", "deadline": "2h", "run": "10m", "gates": [GATE]},
            "latest": {
                "zone": "latest",
                "deadline": f"{latest_deadline // 60}m{latest_deadline % 60}s",
                "run": "1m",
                "gates": [GATE],
            },
            "nofc": {"zone": "static", "deadline": "2h", "run": "10m", "gates": [GATE]},
            "tight": {"zone": "planned", "deadline": "5m", "run": "1m", "gates": [GATE]},
            "mixed": {
                "zone": "latest",
                "deadline": f"{latest_deadline // 60}m{latest_deadline % 60}s",
                "run": "1m",
                "gates": [GATE, OTHER_GATE],
            },
            "other": {"zone": "planned", "deadline": "2h", "run": "10m", "gates": [OTHER_GATE]},
        }
        for name, spec in specs.items():
            api.create_pod(
                gpu_pod(
                    name,
                    self.namespace,
                    scheduler=self.scheduler,
                    node_selector={PRODUCT_LABEL: PRODUCTS[spec["zone"]]},
                    annotations={
                        "lowcarb.dev/deadline": spec["deadline"],
                        "lowcarb.dev/expected-duration": spec["run"],
                    },
                    gates=spec["gates"],
                )
            )
        self._thread = threading.Thread(target=self._poll, name="gate-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            try:
                pods = self.api.pods(self.namespace)
            except Exception as exc:  # API server restarts happen in other modules
                self.poll_errors.append(str(exc))
                continue
            now = time.time()
            for pod in pods:
                name = pod["metadata"]["name"]
                self.last_seen[name] = pod
                gates = [g["name"] for g in pod["spec"].get("schedulingGates") or []]
                if GATE not in gates and name not in self.released_at:
                    self.released_at[name] = now
                if node_of(pod) and name not in self.bound_at:
                    self.bound_at[name] = now

    def gates_of(self, name: str) -> list[str]:
        pod = self.api.pod(self.namespace, name)
        return [g["name"] for g in pod["spec"].get("schedulingGates") or []]

    def wait_released(self, names: list[str], until: float) -> None:
        while time.time() < until and not all(n in self.released_at for n in names):
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
