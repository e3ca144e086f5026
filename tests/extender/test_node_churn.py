"""The verbs, the cluster state and the GPU gauges under random churn: nodes whose GPUs come and go
(a device plugin restarting reports 0), MIG profiles appearing and vanishing, whole, shared and
MIG pods bound and deleted, names kube-scheduler sends that lowcarb does not know. Every answer
must stay well formed and consistent with the request, and nothing may raise."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from scheduler import wire
from scheduler.app import ServeOptions, build_runtime
from scheduler.cluster import metrics
from tests.test_cluster import node, pod

MIG: tuple[dict[str, str], ...] = (
    {},
    {"nvidia.com/mig-1g.10gb": "7"},
    {"nvidia.com/mig-3g.40gb": "2"},
    {"nvidia.com/mig-1g.10gb": "0"},
)
PRODUCTS = ("NVIDIA-A100-SXM4-80GB", "Tesla-T4", "NVIDIA-L4", "NVIDIA-H100-80GB-HBM3")
REGIONS = ("us-east-1", "eu-north-1", "eu-west-1")


def gpu_pod(uid: str, kind: str, rng: random.Random) -> wire.Pod:
    if kind == "mig":
        raw: dict[str, Any] = msgspec.to_builtins(pod(uid, gpus=0))
        raw["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/mig-1g.10gb"] = "1"
        return msgspec.convert(raw, wire.Pod)
    annotations = {}
    if kind == "shared":
        annotations["lowcarb.dev/gpu-milli"] = str(rng.choice((250, 500, 700)))
        if rng.random() < 0.5:  # a recorded slot, maybe one the node no longer has
            annotations["lowcarb.dev/gpu-index"] = str(rng.randrange(9))
    return pod(uid, gpus={"whole": 1, "two": 2, "cpu": 0}.get(kind, 1), annotations=annotations)


@pytest.mark.parametrize("seed", range(12))
def test_answers_stay_consistent_while_nodes_and_pods_churn(seed: int) -> None:
    rng = random.Random(seed)
    extender = build_runtime(ServeOptions()).extender
    state = extender.state
    metrics.watch(state)
    names = [f"n{i}" for i in range(12)]
    versions = dict.fromkeys(names, 0)

    def update(name: str) -> None:
        versions[name] += 1
        state.upsert_node(
            node(name, gpus=rng.choice((0, 0, 1, 2, 4, 8)), product=rng.choice(PRODUCTS),
                 region=rng.choice(REGIONS), rv=str(versions[name]), mig=rng.choice(MIG))
        )  # fmt: skip

    for name in names:
        update(name)
    bound: list[str] = []
    try:
        for step in range(60):
            roll = rng.random()
            if roll < 0.3:
                update(rng.choice(names))
            elif roll < 0.45 and bound:
                state.delete_pod(bound.pop(rng.randrange(len(bound))))
            else:
                kind = rng.choice(("whole", "shared", "mig", "two", "cpu"))
                p = gpu_pod(f"p{step}", kind, rng)
                asked = rng.sample(names, rng.randint(1, len(names)))
                asked += ["ghost"] if rng.random() < 0.2 else []
                body = msgspec.json.encode({"Pod": msgspec.to_builtins(p), "NodeNames": asked})
                result = json.loads(extender.filter(body))
                assert result["Error"] == ""
                passed, failed = result["NodeNames"], result["FailedNodes"]
                assert set(passed) | set(failed) == set(asked) and not set(passed) & set(failed)
                assert "ghost" not in passed
                scores = json.loads(extender.prioritize(body))
                assert {s["Host"] for s in scores} <= set(asked) - {"ghost"}
                assert all(0 <= s["Score"] <= 10 for s in scores)
                if passed:
                    raw = msgspec.to_builtins(p)
                    raw["spec"]["nodeName"] = rng.choice(passed)
                    state.upsert_pod(msgspec.convert(raw, wire.Pod))
                    bound.append(p.metadata.uid)
            table = state.full_table()
            assert (table.gpu_free >= 0).all()
            gauges = metrics.gpus_by_zone(state)
            assert sum(v[0] for v in gauges.values()) == int(table.gpu_total.sum())
            assert 0.0 <= state.gpu_allocated_share() <= 1.0
    finally:
        metrics.unwatch(state)
