"""Bind checks the pod on its node again, against the GPUs as they are at bind time.

Found through the real kube-scheduler (tests/e2e): it binds in the background while it already
schedules the next pod, and it skips prioritize when one node passes the filters. Both are replayed
here with the recorded kube-scheduler payload and a recording binder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from carbon.testing import FixedView
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.service import Extender
from scheduler.names import ANN_DECISION, ANN_GPU_INDEX
from scheduler.policy.validate import load_policy

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "fixtures/kube-scheduler/v1.36.2/prioritize.args.nodeCacheCapable-false.json"
)
ARGS = json.loads(FIXTURE.read_text())  # a 4-GPU pod; usw2-b-gpu has 4 GPUs, use1-a-gpu 8


class RecordingBinder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]
    ) -> str:
        self.calls.append((name, node, annotations))
        return ""


def extender() -> tuple[Extender, RecordingBinder]:
    engine = Engine(load_policy(None))
    binder = RecordingBinder()
    ext = Extender(
        state=ClusterState(),
        engine=lambda: engine,
        carbon=lambda: FixedView({}),
        clock=lambda: 0.0,
        binder=binder,
    )
    return ext, binder


def error_of(body: bytes) -> str:
    return str(json.loads(body).get("Error") or "")


def pod_args(name: str) -> dict[str, Any]:
    args = copy.deepcopy(ARGS)
    args["Pod"]["metadata"]["name"] = name
    args["Pod"]["metadata"]["uid"] = f"uid-{name}"
    return args


def binding(name: str, node: str) -> bytes:
    body = {"PodName": name, "PodNamespace": ARGS["Pod"]["metadata"]["namespace"]}
    return json.dumps({**body, "PodUID": f"uid-{name}", "Node": node}).encode()


async def test_a_node_filled_since_prioritize_is_refused_at_bind() -> None:
    ext, binder = extender()
    for name in ("first", "second"):  # both scored before either binds, as kube-scheduler does
        body = json.dumps(pod_args(name)).encode()
        ext.filter(body)
        ext.prioritize(body)
    assert error_of(await ext.bind(binding("first", "usw2-b-gpu"))) == ""
    refused = error_of(await ext.bind(binding("second", "usw2-b-gpu")))
    assert "no longer fits" in refused and "usw2-b-gpu" in refused
    assert [name for name, _, _ in binder.calls] == ["first"]  # no Binding sent for the second
    again = error_of(await ext.bind(binding("second", "use1-a-gpu")))
    assert again == ""  # retried elsewhere by kube-scheduler: the 8-GPU node still fits


async def test_a_bind_without_prioritize_still_records_its_decision() -> None:
    ext, binder = extender()
    ext.filter(json.dumps(pod_args("alone")).encode())  # one feasible node: no prioritize call
    assert error_of(await ext.bind(binding("alone", "use1-a-gpu"))) == ""
    (_, node, annotations) = binder.calls[0]
    assert node == "use1-a-gpu"
    decision = json.loads(annotations[ANN_DECISION])
    assert decision["node"] == "use1-a-gpu" and decision["gpus"] == 4
    assert ANN_GPU_INDEX not in annotations  # whole GPUs: no shared slot to name
    # the pod now holds 4 of the node's 8 GPUs: two more such pods cannot both fit
    for name in ("b", "c"):
        ext.filter(json.dumps(pod_args(name)).encode())
    assert error_of(await ext.bind(binding("b", "use1-a-gpu"))) == ""
    assert "no longer fits" in error_of(await ext.bind(binding("c", "use1-a-gpu")))


async def test_a_pod_lowcarb_never_saw_is_bound_as_before() -> None:
    ext, binder = extender()
    assert error_of(await ext.bind(binding("stranger", "use1-a-gpu"))) == ""
    assert binder.calls == [("stranger", "use1-a-gpu", {})]
