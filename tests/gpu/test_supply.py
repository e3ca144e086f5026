"""GPU supply from real Node objects, usage rebuilt from pods (restart), per-GPU bookkeeping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from scheduler import wire
from scheduler.demand import PodDemand, parse_demand
from scheduler.gpu import supply as gpu

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gpu"


def real_nodes() -> dict[str, wire.Node]:
    data = msgspec.json.decode((FIXTURES / "nodes-list.json").read_bytes())
    nodes = [msgspec.convert(item, wire.Node) for item in data["items"]]
    return {n.metadata.name: n for n in nodes}


def make_node(labels: dict[str, str], alloc: dict[str, str]) -> wire.Node:
    return msgspec.convert(
        {"metadata": {"name": "n", "labels": labels}, "status": {"allocatable": alloc}}, wire.Node
    )


def make_pod(gpus: int, milli: int | None = None, index: str | None = None) -> wire.Pod:
    ann: dict[str, str] = {}
    if milli is not None:
        ann["lowcarb.dev/gpu-milli"] = str(milli)
    if index is not None:
        ann["lowcarb.dev/gpu-index"] = index
    body: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": ann},
        "spec": {"containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]},
    }
    return msgspec.convert(body, wire.Pod)


def test_supply_from_real_gfd_labelled_nodes() -> None:
    nodes = real_nodes()
    a100 = gpu.node_gpu_supply(nodes["use1-a-gpu"])
    assert (a100.count, a100.product, a100.memory_mib) == (8, "NVIDIA-A100-SXM4-80GB", 81920)
    l4 = gpu.node_gpu_supply(nodes["usw2-b-gpu"])
    assert (l4.count, l4.product, l4.memory_mib) == (4, "NVIDIA-L4", 23034)
    cpu_only = gpu.node_gpu_supply(nodes["euc1-b-cpu"])
    assert not cpu_only.has_gpu and cpu_only.count == 0 and cpu_only.product == ""
    assert not a100.notes and not cpu_only.notes


def test_time_sliced_gpus_count_physical_gpus() -> None:
    node = make_node(
        {"nvidia.com/gpu.count": "2", "nvidia.com/gpu.replicas": "4"}, {"nvidia.com/gpu": "8"}
    )
    supply = gpu.node_gpu_supply(node)
    assert (supply.count, supply.replicas) == (2, 4)


def test_mig_mixed_resources_are_fixed_bins() -> None:
    node = make_node(
        {"nvidia.com/mig.strategy": "mixed", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
        {"nvidia.com/gpu": "0", "nvidia.com/mig-1g.5gb": "7", "nvidia.com/mig-3g.20gb": "2"},
    )
    supply = gpu.node_gpu_supply(node)
    assert supply.count == 0 and supply.has_gpu
    assert supply.mig == {"1g.5gb": 7, "3g.20gb": 2}
    assert supply.mig_strategy == "mixed"


def test_bad_labels_are_noted_not_fatal() -> None:
    node = make_node(
        {"nvidia.com/gpu.memory": "lots", "nvidia.com/gpu.count": "3"}, {"nvidia.com/gpu": "2"}
    )
    supply = gpu.node_gpu_supply(node)
    assert supply.count == 2 and supply.memory_mib == 0
    assert any("nvidia.com/gpu.memory" in n for n in supply.notes)
    assert any("disagrees" in n for n in supply.notes)


@pytest.mark.parametrize(
    ("text", "expected"), [("3", (3,)), ("0,1", (0, 1)), ("", ()), ("x", ()), ("-1", ())]
)
def test_gpu_index_annotation(text: str, expected: tuple[int, ...]) -> None:
    assert gpu.gpu_index_of(make_pod(1, 500, text)) == expected


def demand(gpus: int, milli: int = 1000) -> PodDemand:
    return PodDemand(uid="u", namespace="ns", name="p", gpus=gpus, gpu_milli=milli)


def test_restart_rebuilds_per_gpu_fractions_from_annotations() -> None:
    supply = gpu.GpuSupply(count=4)
    pods = [
        (parse_demand(make_pod(1, 300, "2")), gpu.gpu_index_of(make_pod(1, 300, "2"))),
        (parse_demand(make_pod(1, 500, "2")), (2,)),
        (parse_demand(make_pod(2)), ()),  # whole GPUs, no index: lowest fully free slots
        (parse_demand(make_pod(1, 250)), ()),  # sharing, no index: best fit after the others
    ]
    assert gpu.free_slots(supply, pods) == [0, 0, 200, 750]


def test_apply_pod_best_fit_and_recorded_index() -> None:
    row = np.array([1000, 400, 700, 0], dtype=np.int32)
    assert gpu.apply_pod(row, demand(1, 300)) == [1]  # least free GPU that fits
    assert row.tolist() == [1000, 100, 700, 0]
    assert gpu.apply_pod(row, demand(1, 300), (2,)) == [2]
    assert row.tolist() == [1000, 100, 400, 0]
    assert gpu.apply_pod(row, demand(1)) == [0]
    assert row.tolist() == [0, 100, 400, 0]


def test_apply_pod_never_goes_negative_on_overcommit() -> None:
    row = np.array([1000, 200], dtype=np.int32)
    gpu.apply_pod(row, demand(2))
    assert row.tolist() == [0, 0]


def test_a_node_whose_gpus_went_to_zero_keeps_its_pods_without_failing() -> None:
    """The device plugin restarting sets a node's allocatable GPUs to 0 for a while; the pods
    sharing its GPUs are still bound there (their recorded slots no longer exist)."""
    row = np.zeros(0, dtype=np.int32)
    for d, index in ((demand(1, 300), (1,)), (demand(1, 300), ()), (demand(2), ())):
        assert gpu.apply_pod(row, d, index) == []
    assert gpu.free_slots(gpu.GpuSupply(count=0), [(demand(1, 500), (0,)), (demand(1), ())]) == []


def test_vectorised_fit_masks_and_choices() -> None:
    free = np.array([[1000, 1000, 0], [300, 200, 0], [1000, 250, 600]], dtype=np.int32)
    assert gpu.gpu_fit_mask(free, 2, 1000).tolist() == [True, False, False]
    assert gpu.gpu_fit_mask(free, 1, 250).tolist() == [True, True, True]
    assert gpu.best_fit_gpu(free, 250).tolist() == [0, 0, 1]
    assert gpu.worst_fit_gpu(free, 250).tolist() == [0, 0, 0]
    assert gpu.best_fit_gpu(free, 700).tolist() == [0, -1, 0]
    after = gpu.placed_free(free, 2, 1000)
    assert after[0].tolist() == [0, 0, 0] and after[1].tolist() == [300, 200, 0]
