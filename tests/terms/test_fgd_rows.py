"""FGD deltas remembered per cluster-state row: the same numbers as computing every row, with
only the rows changed since asked of the model."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgspec
import numpy as np

from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.gpu.fragmentation import FragmentationModel, TaskShape, Workload
from scheduler.terms.fgd_rows import FgdRows
from scheduler.terms.gpu_fit import score_rows
from tests.e2e.objects import gpu_node

WORKLOAD = Workload(
    shapes=(TaskShape(1000, 1, 1000), TaskShape(2000, 2, 1000), TaskShape(1000, 1, 500)),
    weights=(0.5, 0.3, 0.2),
)
PRODUCTS = ("NVIDIA-A100-SXM4-80GB", "Tesla-T4", "NVIDIA-H100-80GB-HBM3")


def fleet(n: int, seed: int = 0) -> ClusterState:
    state = ClusterState()
    rng = random.Random(seed)
    for i in range(n):
        node = gpu_node(
            f"n{i:03d}", region=("us-east", "eu-west")[i % 2], product=PRODUCTS[i % 3],
            gpus=rng.choice((1, 2, 4, 8)),
        )  # fmt: skip
        node["metadata"].update(uid=f"u{i}", resourceVersion="1")
        state.upsert_node(msgspec.convert(node, wire.Node))
    return state


def demand(uid: str, gpus: int = 1, milli: int = 1000) -> PodDemand:
    return PodDemand(uid, "ns", uid, gpus=gpus, gpu_milli=milli, cpu_milli=1000, mem_bytes=2**30)


def fresh(table: NodeTable) -> NodeTable:
    """The same rows without their origin: computed in full, as before any memory."""
    return dataclasses.replace(table, origin=None)


class CountingModel(FragmentationModel):
    """The real model, counting the rows each ``placement_delta`` call is asked about."""

    def __init__(self, workload: Workload) -> None:
        super().__init__(workload)
        self.rows_asked: list[int] = []

    def placement_delta(
        self, gpu_free: np.ndarray, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        self.rows_asked.append(int(gpu_free.shape[0]))
        return super().placement_delta(gpu_free, *args, **kwargs)


def test_remembered_deltas_equal_a_full_computation_while_pods_come_and_go() -> None:
    state = fleet(60)
    names = state.node_names()
    frag, remembered = FragmentationModel(WORKLOAD), FgdRows()
    rng = random.Random(7)
    placed: list[str] = []
    for step in range(80):
        pod = demand(f"p{step}", gpus=rng.choice((1, 1, 2)), milli=rng.choice((1000, 1000, 500)))
        rng.shuffle(names)  # kube-scheduler's order changes every cycle
        table, _ = state.table_for(names[: rng.randint(40, 60)])
        got = score_rows(table, pod, "fgd", frag, remembered)
        want = score_rows(fresh(table), pod, "fgd", frag)
        assert np.array_equal(got.raw, want.raw), step
        assert np.array_equal(got.detail["gpu_index"], want.detail["gpu_index"]), step
        assert np.array_equal(got.normalized, want.normalized), step
        if rng.random() < 0.7:  # the pod lands (slot 0 for a shared GPU), or one leaves
            state.assume(pod, rng.choice(names), (0,) if pod.shares_gpu else ())
            placed.append(pod.uid)
        elif placed:
            state.forget(placed.pop(rng.randrange(len(placed))))


def test_only_rows_changed_since_are_asked_of_the_model() -> None:
    state = fleet(40)
    names = state.node_names()
    frag, remembered = CountingModel(WORKLOAD), FgdRows()
    pod = demand("p")
    table, _ = state.table_for(names)
    remembered.placement_delta(frag, table, 1, 1000, 1000)
    assert frag.rows_asked == [40]
    table, _ = state.table_for(list(reversed(names)))  # another order, nothing changed
    remembered.placement_delta(frag, table, 1, 1000, 1000)
    assert frag.rows_asked == [40]  # no call at all
    state.assume(demand("q"), "n007")
    table, _ = state.table_for(names)
    remembered.placement_delta(frag, table, 1, 1000, 1000)
    assert frag.rows_asked == [40, 1]
    # another pod shape, or another expected workload, starts from scratch
    remembered.placement_delta(frag, table, 2, 1000, 1000)
    other = CountingModel(WORKLOAD)
    remembered.placement_delta(other, table, 1, 1000, 1000)
    assert frag.rows_asked == [40, 1, 40] and other.rows_asked == [40]
    assert pod.uid == "p"


def test_a_new_node_set_or_another_state_never_reads_old_rows() -> None:
    frag, remembered = FragmentationModel(WORKLOAD), FgdRows()
    pod = demand("p", gpus=2)
    busy, idle = fleet(30, seed=1), fleet(30, seed=1)  # same size, same names, other usage
    for i in range(0, 30, 3):
        busy.assume(demand(f"b{i}", gpus=1), f"n{i:03d}")
    for state in (idle, busy, idle):
        table, _ = state.table_for(state.node_names())
        got = remembered.placement_delta(frag, table, pod.gpus, 1000, pod.cpu_milli)
        want = frag.placement_delta(
            table.gpu_free, table.cpu_free, table.gpu_model, table.models, 2, 1000, 1000
        )
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    node = gpu_node("n031", region="us-east", gpus=8)
    node["metadata"].update(uid="u31", resourceVersion="1")
    idle.upsert_node(msgspec.convert(node, wire.Node))  # a new node: a new table
    table, _ = idle.table_for(idle.node_names())
    assert table.origin is not None and table.origin.size == 31
    got = remembered.placement_delta(frag, table, 2, 1000, 1000)
    assert np.array_equal(got[0], frag.placement_delta(
        table.gpu_free, table.cpu_free, table.gpu_model, table.models, 2, 1000, 1000
    )[0])  # fmt: skip
