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

from carbon.clock import wall
from tests.e2e.e2e_support import GATE, step_series
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb
from tests.e2e.objects import PRODUCT_LABEL, gpu_node, gpu_pod, node_of
from tests.e2e.procs import wait_until

OTHER_GATE = "example.com/quota-check"
STEP_S = 20.0
# The controller's first pass with forecasts comes one tick (30 s) after the pods (the pass that
# sees them first asks the cache for their zones); a pod is held only for a start more than 60 s
# after that pass. So the planned and latest starts lie 100+ s after creation.
PLANNED_LEAD_S = 100.0  # the cleaner period starts at least this long after the pods
LATEST_START_S = 110.0  # latest safe start of the "latest" pod, after its creation
FRESH_CLEAN_S = 1200.0  # E2E-FRESH gets cleaner this long after the scenario starts
MARGIN_S = 300.0  # the controller's safety margin before the latest start
PRODUCTS = {
    "planned": "NVIDIA-E2E-PLANNED",
    "latest": "NVIDIA-E2E-LATEST",
    "static": "NVIDIA-E2E-STATIC",
    "fresh": "NVIDIA-E2E-FRESH",
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
        now = wall()
        self.clean_at = math.ceil((now + PLANNED_LEAD_S + 5) / STEP_S) * STEP_S
        clean_at = self.clean_at
        step_series(self.replay_root, "E2E-PLANNED", now, lambda t: 400.0 if t < clean_at else 80.0)
        step_series(
            self.replay_root,
            "E2E-LATEST",
            now,
            lambda t: max(20.0, 600.0 - 20.0 * max(0.0, (t - now) // STEP_S)),
        )
        # written now, used late (test_gates_failopen): no pod of the session can run there, so
        # nothing asks lowcarb's carbon cache for this zone until that test's gated pod
        step_series(
            self.replay_root,
            "E2E-FRESH",
            now,
            lambda t: 400.0 if t < now + FRESH_CLEAN_S else 60.0,
        )
        api = self.api
        api.ensure_namespace(self.namespace)
        # two nodes per zone: with a single feasible node kube-scheduler skips prioritize, and
        # lowcarb then binds without a decision (test_shared_gpu_on_a_single_candidate_node)
        regions = {
            "planned": "e2e-planned",
            "latest": "e2e-latest",
            "static": "ap-south-1",
            "fresh": "e2e-fresh",
        }
        api.create_nodes(
            [
                # ap-south-1 is IN-WE: a static annual mean only, no forecast in the chain
                gpu_node(f"gate-{zone}-{i}", region=region, product=PRODUCTS[zone])
                for zone, region in regions.items()
                for i in (1, 2)
            ]
        )
        time.sleep(1.0)  # lowcarb's node watch
        self.created_at = wall()
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
            now = wall()
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
        while wall() < until and not all(n in self.released_at for n in names):
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


# --- checks shared by test_gates and test_gates_failopen ---------------------------------------

TICK_S = 30.0  # GateSettings.tick_s
MIN_HOLD_S = 60.0  # GateSettings.min_hold_s
GRACE_S = 180.0  # GateSettings.forecast_grace_s
SLACK_S = 10.0  # API latency, poller period, a slow pass on a loaded machine


def lowcarb_events(api: KubeApi, ns: str, pod: str) -> list[tuple[str, str]]:
    events = [e for e in api.events(ns, pod) if e.get("reason") in ("CarbonHold", "CarbonRelease")]
    events.sort(key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")
    return [(str(e["reason"]), str(e.get("message") or e.get("note") or "")) for e in events]


def wait_event(api: KubeApi, ns: str, pod: str, reason: str) -> str:
    def check() -> str | None:
        found = [m for r, m in lowcarb_events(api, ns, pod) if r == reason]
        return found[-1] if found else None

    return wait_until(f"a {reason} event for {pod}", check, 15, 0.25)


def released(scenario: GateScenario, name: str, until: float) -> float:
    scenario.wait_released([name], until)
    assert name in scenario.released_at, (
        f"{name} still gated at {wall() - scenario.created_at:.0f}s after creation; "
        f"gates {scenario.gates_of(name)}"
    )
    return scenario.released_at[name]
