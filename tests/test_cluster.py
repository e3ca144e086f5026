"""ClusterState: node rows, pods counted against them, assumed pods, relists, unknown names."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from scheduler import wire
from scheduler.app import ServeOptions, build_runtime
from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import NodeTable
from scheduler.demand import parse_demand
from scheduler.extender import service
from scheduler.gpu import supply as gpu

GIB = 2**30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node(
    name: str,
    *,
    gpus: int = 8,
    product: str = "NVIDIA-A100-SXM4-80GB",
    region: str = "us-east-1",
    rv: str = "1",
    cpu: str = "96",
    memory: str = "1Ti",
    mig: dict[str, str] | None = None,
    gpu_mem: str = "81920",
) -> wire.Node:
    alloc = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus), **(mig or {})}
    return msgspec.convert(
        {
            "metadata": {
                "name": name,
                "resourceVersion": rv,
                "labels": {
                    "topology.kubernetes.io/region": region,
                    "nvidia.com/gpu.product": product,
                    "nvidia.com/gpu.memory": gpu_mem,
                    "nvidia.com/gpu.count": str(gpus),
                },
            },
            "status": {"allocatable": alloc, "capacity": alloc},
        },
        wire.Node,
    )


def pod(
    uid: str,
    node_name: str = "",
    *,
    gpus: int = 1,
    cpu: str = "4",
    memory: str = "16Gi",
    phase: str = "Running",
    annotations: dict[str, str] | None = None,
) -> wire.Pod:
    requests = {"cpu": cpu, "memory": memory}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    return msgspec.convert(
        {
            "metadata": {
                "name": f"pod-{uid}",
                "namespace": "ml",
                "uid": uid,
                "annotations": annotations or {},
            },
            "spec": {
                "nodeName": node_name,
                "containers": [{"name": "main", "resources": {"requests": requests}}],
            },
            "status": {"phase": phase},
        },
        wire.Pod,
    )


def whole_free(table: NodeTable, row: int = 0) -> int:
    return int((table.gpu_free[row] >= gpu.MILLI).sum())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> ClusterState:
    s = ClusterState(clock=clock, assume_ttl_s=60.0)
    s.upsert_node(node("a", gpus=8, region="us-east-1"))
    s.upsert_node(node("b", gpus=4, product="NVIDIA-L4", region="eu-north-1", cpu="48"))
    return s


def test_rows_describe_the_nodes_in_request_order(state: ClusterState) -> None:
    table, unknown = state.table_for(["b", "a"])
    assert unknown == []
    assert table.names == ["b", "a"]
    assert table.gpu_total.tolist() == [4, 8]
    assert [whole_free(table, 0), whole_free(table, 1)] == [4, 8]
    assert table.cpu_free.tolist() == [48_000, 96_000]
    assert table.mem_free.tolist() == [2**40, 2**40]
    assert [table.models[m] for m in table.gpu_model] == ["NVIDIA-L4", "NVIDIA-A100-SXM4-80GB"]
    assert table.zone_names() == ["eu-north-1", "us-east-1"]
    assert table.region == ["eu-north-1", "us-east-1"]


def test_unknown_names_are_reported_not_scored(state: ClusterState) -> None:
    table, unknown = state.table_for(["ghost", "a", "gone", "b"])
    assert table.names == ["a", "b"]
    assert unknown == ["ghost", "gone"]
    empty, unknown = state.table_for(["ghost"])
    assert len(empty) == 0 and unknown == ["ghost"]


def test_name_lookup_follows_node_set_changes(state: ClusterState) -> None:
    names = ["a", "b", "c"]
    assert state.table_for(names)[1] == ["c"]
    state.upsert_node(node("c", gpus=2))
    table, unknown = state.table_for(names)
    assert unknown == [] and table.names == names and table.gpu_total.tolist() == [8, 4, 2]
    state.delete_node("a")
    table, unknown = state.table_for(names)
    assert unknown == ["a"] and table.names == ["b", "c"]


def test_bound_pods_use_capacity_terminal_and_pending_do_not(state: ClusterState) -> None:
    state.upsert_pod(pod("p1", "a", gpus=3, cpu="10", memory="100Gi"))
    state.upsert_pod(pod("p2", "a", gpus=2, phase="Succeeded"))
    state.upsert_pod(pod("p3", "", gpus=4, phase="Pending"))
    table, _ = state.table_for(["a"])
    assert whole_free(table) == 5
    assert table.cpu_free[0] == 86_000
    assert table.mem_free[0] == 2**40 - 100 * GIB
    state.upsert_pod(pod("p1", "a", gpus=3, phase="Failed"))  # finished: freed
    assert whole_free(state.table_for(["a"])[0]) == 8


def test_unparsable_pod_is_not_counted_and_does_not_crash(state: ClusterState) -> None:
    state.upsert_pod(pod("bad", "a", gpus=2, cpu="abc"))
    assert state.pod("bad") is None
    assert whole_free(state.table_for(["a"])[0]) == 8


def test_assumed_pod_counts_until_it_expires(state: ClusterState, clock: Clock) -> None:
    state.assume(parse_demand(pod("new", gpus=4)), "a")
    assert whole_free(state.table_for(["a"])[0]) == 4
    clock.now += 59
    assert whole_free(state.table_for(["a"])[0]) == 4
    clock.now += 2
    assert whole_free(state.table_for(["a"])[0]) == 8
    assert state.pod("new") is None


def test_back_to_back_pods_never_double_book(state: ClusterState) -> None:
    fit = []
    for k in range(3):  # three 4-GPU pods for one 8-GPU node, none seen bound yet
        table, _ = state.table_for(["a"])
        ok = bool(gpu.gpu_fit_mask(table.gpu_free, 4, gpu.MILLI)[0])
        fit.append(ok)
        if ok:
            state.assume(parse_demand(pod(f"job{k}", gpus=4)), "a")
    assert fit == [True, True, False]
    assert whole_free(state.table_for(["a"])[0]) == 0


def test_shared_gpu_pods_stay_on_their_recorded_gpus(state: ClusterState) -> None:
    share = {"lowcarb.dev/gpu-milli": "600"}
    state.assume(parse_demand(pod("s1", gpus=1, annotations=share)), "b", (2,))
    state.assume(parse_demand(pod("s2", gpus=1, annotations=share)), "b", (3,))
    free = state.table_for(["b"])[0].gpu_free[0, :4].tolist()
    assert free == [1000, 1000, 400, 400]


def test_a_node_whose_gpus_drop_to_zero_keeps_serving(state: ClusterState) -> None:
    """A restarting device plugin reports 0 GPUs for a while; the pods sharing the node's GPUs
    are still bound there, and every read of the state must go on working."""
    share = {"lowcarb.dev/gpu-milli": "600", "lowcarb.dev/gpu-index": "2"}
    state.upsert_pod(pod("s1", "b", gpus=1, annotations=share))
    state.upsert_pod(pod("s2", "b", gpus=1, annotations={"lowcarb.dev/gpu-milli": "300"}))
    state.upsert_node(node("b", gpus=0, product="NVIDIA-L4", region="eu-north-1", rv="2"))
    table, unknown = state.view_for(["a", "b"])
    assert unknown == [] and table.gpu_total.tolist() == [8, 0]
    assert not table.gpu_free[1].any()
    assert state.gpu_allocated_share() == 0.0
    state.upsert_node(node("b", gpus=4, product="NVIDIA-L4", region="eu-north-1", rv="3"))
    back = state.table_for(["b"])[0].gpu_free[0, :4].tolist()
    assert back == [1000, 1000, 100, 1000]  # the recorded slot again, the other fits beside it


def test_watch_confirmation_replaces_the_assumption(state: ClusterState, clock: Clock) -> None:
    state.assume(parse_demand(pod("u1", gpus=2)), "a")
    state.upsert_pod(pod("u1", "a", gpus=2))  # the watch sees it bound: counted once
    assert whole_free(state.table_for(["a"])[0]) == 6
    state.assume(parse_demand(pod("u1", gpus=2)), "a")  # a late assume changes nothing
    clock.now += 3600  # bound pods never expire
    assert whole_free(state.table_for(["a"])[0]) == 6
    usage = state.pod("u1")
    assert usage is not None and usage.assumed_until is None


def test_forget_drops_only_assumed_pods(state: ClusterState) -> None:
    state.assume(parse_demand(pod("f1", gpus=2)), "a")
    state.upsert_pod(pod("bound", "a", gpus=1))
    state.forget("f1")
    state.forget("bound")
    assert whole_free(state.table_for(["a"])[0]) == 7


def test_relist_keeps_assumed_pods(state: ClusterState, clock: Clock) -> None:
    state.upsert_pod(pod("old", "a", gpus=1))
    state.assume(parse_demand(pod("fresh", gpus=4)), "a")
    # 410 Gone -> relist: the API does not show "fresh" bound yet, and "old" is gone
    state.replace_all([node("a", gpus=8, rv="2"), node("b", gpus=4, rv="2")], [])
    assert whole_free(state.table_for(["a"])[0]) == 4
    assert state.pod("old") is None
    clock.now += 61
    assert whole_free(state.table_for(["a"])[0]) == 8


def test_relist_that_shows_the_pod_bound_counts_it_once(state: ClusterState) -> None:
    state.assume(parse_demand(pod("x", gpus=4)), "a")
    state.replace_all(None, [pod("x", "a", gpus=4)])
    assert whole_free(state.table_for(["a"])[0]) == 4
    usage = state.pod("x")
    assert usage is not None and usage.assumed_until is None


def test_has_node_needs_the_same_resource_version(state: ClusterState) -> None:
    assert state.has_node("a", "1")
    assert not state.has_node("a", "2")
    assert not state.has_node("a", "")
    assert not state.has_node("zzz", "1")


def test_same_resource_version_is_not_reparsed(state: ClusterState) -> None:
    state.upsert_node(node("a", gpus=2, rv="1"))  # same version: ignored
    assert state.table_for(["a"])[0].gpu_total.tolist() == [8]
    state.upsert_node(node("a", gpus=2, rv="2"))
    assert state.table_for(["a"])[0].gpu_total.tolist() == [2]


def test_readers_keep_their_snapshot(state: ClusterState) -> None:
    before, _ = state.table_for(["a"])
    state.upsert_pod(pod("p", "a", gpus=8))
    state.upsert_node(node("a", gpus=4, rv="9"))
    assert before.gpu_total.tolist() == [8] and whole_free(before) == 8
    after, _ = state.table_for(["a"])
    assert after.gpu_total.tolist() == [4] and whole_free(after) == 0


def _columns(table: NodeTable) -> dict[str, Any]:
    width = table.gpu_free.shape[1]
    return {
        "names": table.names,
        "zone": [table.zones[z] if z >= 0 else None for z in table.zone.tolist()],
        "region": table.region,
        "model": [table.models[m] for m in table.gpu_model.tolist()],
        "gpu_total": table.gpu_total.tolist(),
        "gpu_free": [row[:width].tolist() for row in table.gpu_free],
        "gpu_mem": table.gpu_mem_mib.tolist(),
        "cpu": table.cpu_free.tolist(),
        "mem": table.mem_free.tolist(),
        "mig": {  # a profile no node offers any more may keep an all-zero column
            p: table.mig_free[:, j].tolist()
            for j, p in enumerate(table.mig_profiles)
            if table.mig_free[:, j].any()
        },
    }


def _pad(cols: dict[str, Any], width: int) -> dict[str, Any]:
    cols["gpu_free"] = [row + [0] * (width - len(row)) for row in cols["gpu_free"]]
    return cols


def assert_same(live: ClusterState, nodes: dict[str, wire.Node], pods: dict[str, wire.Pod]) -> None:
    fresh = ClusterState()
    fresh.replace_all(nodes.values(), pods.values())
    order = sorted(nodes)
    got, want = live.table_for(order)[0], fresh.table_for(order)[0]
    width = max(got.gpu_free.shape[1], want.gpu_free.shape[1])
    assert _pad(_columns(got), width) == _pad(_columns(want), width)


def test_incremental_updates_match_a_fresh_build() -> None:
    """Random node and pod churn, patched in place, gives the table a fresh cache would build."""
    rng = random.Random(7)
    products = ["NVIDIA-A100-SXM4-80GB", "NVIDIA-L4", "NVIDIA-H100-80GB-HBM3"]
    regions = ["us-east-1", "eu-north-1", "ap-south-1"]
    live = ClusterState()
    patched: list[bool] = []
    patch_row = live._patch_row

    def counting(info: Any) -> bool:
        patched.append(patch_row(info))
        return patched[-1]

    live._patch_row = counting  # type: ignore[method-assign]
    nodes: dict[str, wire.Node] = {}
    pods: dict[str, wire.Pod] = {}
    for k in range(30):
        name = f"n{k}"
        nodes[name] = node(name, gpus=8, product=products[k % 2], region=regions[k % 2])
        live.upsert_node(nodes[name])
    for step in range(400):
        names = list(nodes)
        action = rng.random()
        if action < 0.3:
            name = rng.choice(names)
            rare = rng.random() < 0.1  # now and then a new model, region or MIG profile
            mig = {"nvidia.com/mig-1g.10gb": str(rng.randint(0, 7))} if rare else {}
            nodes[name] = node(
                name,
                gpus=rng.choice([1, 2, 4, 8]),
                product=rng.choice(products if rare else products[:2]),
                region=rng.choice(regions if rare else regions[:2]),
                rv=f"s{step}",
                cpu=str(rng.choice([16, 48, 96])),
                mig=mig,
                gpu_mem=rng.choice(["81920", "23034"]),
            )
            live.upsert_node(nodes[name])
        elif action < 0.32:
            name = rng.choice(names)
            del nodes[name]
            live.delete_node(name)
        elif action < 0.9:
            uid = f"p{rng.randint(0, 60)}"
            pods[uid] = pod(uid, rng.choice(names), gpus=rng.randint(0, 2), cpu="2")
            live.upsert_pod(pods[uid])
        else:
            uid = f"p{rng.randint(0, 60)}"
            pods.pop(uid, None)
            live.delete_pod(uid)
        live.table_for(list(nodes))  # reads in between, so later updates patch rows
        if step % 10 == 9:
            assert_same(live, nodes, pods)
    assert True in patched and False in patched  # both the in-place and the rebuild paths ran


def test_explain_calls_once_per_distinct_state(state: ClusterState) -> None:
    for k in range(6):
        state.upsert_node(node(f"full{k}", gpus=8, rv="1"))
        state.upsert_pod(pod(f"u{k}", f"full{k}", gpus=8))
    table, _ = state.table_for(["a", "b", *(f"full{k}" for k in range(6))])
    calls: list[int] = []

    def why(row: int) -> str:
        calls.append(row)
        return f"{whole_free(table, row)} free of {int(table.gpu_total[row])}"

    rows = np.arange(len(table))
    reasons = table.explain(rows, why)
    assert reasons == {i: why(i) for i in range(len(table))}
    assert len(calls) - len(table) == 3  # a, b and the six identical full nodes
    assert table.explain(np.array([], dtype=np.intp), why) == {}
    # the plain dict a filter reads thousands of rows from: computed once, the same items
    lazy = table.explain(rows, why)
    before = len(calls)
    plain = lazy.plain()  # type: ignore[attr-defined]
    assert type(plain) is dict and plain == {i: why(i) for i in range(len(table))}
    assert len(calls) - before == 3 + len(table) and lazy == plain


def test_decisions_awaiting_bind_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prioritize remembers each pod's decision for bind; memory stays bounded by rows."""
    fixtures = Path(__file__).parent / "fixtures" / "kube-scheduler" / "v1.36.2"
    ext = build_runtime(ServeOptions()).extender
    ext.filter((fixtures / "filter.args.nodeCacheCapable-false.json").read_bytes())
    payload = json.loads((fixtures / "prioritize.args.nodeCacheCapable-true.json").read_bytes())
    monkeypatch.setattr(service, "_MEMO_ROWS", 10)  # four candidate rows per decision
    for k in range(6):
        payload["Pod"]["metadata"]["uid"] = f"uid-{k}"
        ext.prioritize(json.dumps(payload).encode())
        kept = list(ext._memo.values())
        assert ext._memo_rows == sum(len(d.names) for d in kept) <= 10
    assert list(ext._memo) == ["uid-4", "uid-5"]  # the newest survive
    ext.prioritize(json.dumps(payload).encode())  # the same pod again replaces its decision
    assert list(ext._memo) == ["uid-4", "uid-5"] and ext._memo_rows == 8


def test_gpu_allocated_share_counts_the_whole_fleet(state: ClusterState) -> None:
    assert state.gpu_allocated_share() == 0.0
    state.upsert_pod(pod("p1", "a", gpus=3))  # 3 of the 12 GPUs (a: 8, b: 4)
    state.upsert_pod(pod("p2", "b", gpus=3))
    assert state.gpu_allocated_share() == pytest.approx(6 / 12)
    # the candidates kube-scheduler might send (only a, 5 of 8 free) do not change it
    table, _ = state.table_for(["a"])
    assert whole_free(table) == 5
    assert state.gpu_allocated_share() == pytest.approx(0.5)
    # read again after each change, never an earlier answer
    extra = parse_demand(pod("p3", "b", gpus=1))
    state.assume(extra, "b")
    assert state.gpu_allocated_share() == pytest.approx(7 / 12)
    state.forget(extra.uid)
    assert state.gpu_allocated_share() == pytest.approx(0.5)
