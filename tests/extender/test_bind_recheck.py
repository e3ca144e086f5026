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

import pytest

from carbon.testing import FixedView
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.service import Extender
from scheduler.names import ANN_DECISION, ANN_GPU_INDEX
from scheduler.policy.validate import load_policy
from tests.support.engine_spy import record_evaluations
from tests.test_cluster import node
from tests.test_cluster import pod as cluster_pod

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


def shared_pod_args(name: str, milli: int) -> dict[str, Any]:
    """The recorded pod, asking for ``milli`` thousandths of one shared GPU."""
    args = pod_args(name)
    container = args["Pod"]["spec"]["containers"][0]
    for key in ("requests", "limits"):
        container["resources"][key]["nvidia.com/gpu"] = "1"
    args["Pod"]["metadata"]["annotations"] = {"lowcarb.dev/gpu-milli": str(milli)}
    return args


async def test_a_gpu_slot_taken_since_prioritize_is_not_given_twice() -> None:
    ext, binder = extender()
    for name in ("first", "second"):  # both scored before either binds, as kube-scheduler does
        body = json.dumps(shared_pod_args(name, 600)).encode()
        ext.filter(body)
        ext.prioritize(body)
    # both were scored against the same free GPUs: each got the same best slot at prioritize
    assert error_of(await ext.bind(binding("first", "use1-a-gpu"))) == ""
    assert error_of(await ext.bind(binding("second", "use1-a-gpu"))) == ""
    slots = [annotations[ANN_GPU_INDEX] for _, _, annotations in binder.calls]
    assert len(slots) == 2 and slots[0] != slots[1]  # 600 + 600 milli never share one GPU
    notes = [json.loads(a[ANN_DECISION]).get("note") or "" for _, _, a in binder.calls]
    assert not any("overcommit" in note for note in notes)


async def test_a_bind_without_prioritize_still_records_its_decision() -> None:
    ext, binder = extender()
    ext.filter(json.dumps(pod_args("alone")).encode())  # one feasible node: no prioritize call
    assert error_of(await ext.bind(binding("alone", "use1-a-gpu"))) == ""
    (_, node, annotations) = binder.calls[0]
    assert node == "use1-a-gpu"
    decision = json.loads(annotations[ANN_DECISION])
    assert decision["node"] == "use1-a-gpu" and decision["gpus"] == 4
    assert ANN_GPU_INDEX not in annotations  # whole GPUs: no shared slot to name


async def test_a_node_with_no_room_left_is_bound_with_a_note_not_refused() -> None:
    """With ignorable: true kube-scheduler would bind a refused pod itself, unrecorded: so the
    bind goes through and the decision says the node was over-committed."""
    ext, binder = extender()
    for name in ("a", "b", "c"):  # 3 x 4 GPUs on an 8-GPU node, no prioritize in between
        ext.filter(json.dumps(pod_args(name)).encode())
        assert error_of(await ext.bind(binding(name, "use1-a-gpu"))) == ""
    notes = [json.loads(a[ANN_DECISION]).get("note") or "" for _, _, a in binder.calls]
    assert ["overcommit at bind" in note for note in notes] == [False, False, True]


async def test_a_pod_lowcarb_never_saw_is_bound_as_before() -> None:
    ext, binder = extender()
    assert error_of(await ext.bind(binding("stranger", "use1-a-gpu"))) == ""
    assert binder.calls == [("stranger", "use1-a-gpu", {})]


def test_prioritize_prices_scarcity_over_the_fleet_not_the_candidates() -> None:
    """A fleet 3/4 allocated elsewhere: the idle candidates must not make GPU time look free."""
    ext, _ = extender()
    body = json.dumps(pod_args("scarce")).encode()
    ext.filter(body)  # kube-scheduler's nodes enter the cache
    ext.state.upsert_node(node("busy-gpu", gpus=36))  # not among the candidates
    ext.state.upsert_pod(cluster_pod("hog", "busy-gpu", gpus=36))
    total = 8 + 8 + 4 + 4 + 36  # the recorded payload's four nodes, and busy-gpu
    seen = record_evaluations(ext)
    ext.prioritize(body)
    assert [e.fleet_share for e in seen] == [pytest.approx(36 / total)]


async def test_an_untouched_node_keeps_the_decision_without_evaluating_again() -> None:
    ext, binder = extender()
    body = json.dumps(pod_args("steady")).encode()
    ext.filter(body)
    ext.prioritize(body)
    calls = record_evaluations(ext)
    assert error_of(await ext.bind(binding("steady", "use1-a-gpu"))) == ""
    assert calls == []  # nothing changed on use1-a-gpu since prioritize priced it
    decision = json.loads(binder.calls[0][2][ANN_DECISION])
    assert decision["node"] == "use1-a-gpu" and decision["gpus"] == 4
    assert "overcommit" not in (decision.get("note") or "")


async def test_a_node_filled_since_prioritize_is_checked_again_at_bind() -> None:
    """Three 4-GPU pods scored before any binds (kube-scheduler binds in the background): the
    third finds the 8-GPU node full at bind, because the first two binds touched it."""
    ext, binder = extender()
    for name in ("a", "b", "c"):
        body = json.dumps(pod_args(name)).encode()
        ext.filter(body)
        ext.prioritize(body)
    calls = record_evaluations(ext)
    for name in ("a", "b", "c"):
        assert error_of(await ext.bind(binding(name, "use1-a-gpu"))) == ""
    assert len(calls) == 2  # a's node was as priced; b's and c's had changed: checked again
    notes = [json.loads(a[ANN_DECISION]).get("note") or "" for _, _, a in binder.calls]
    assert ["overcommit at bind" in note for note in notes] == [False, False, True]
