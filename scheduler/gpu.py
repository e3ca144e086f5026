"""GPU supply of a node and how its pods use it, per GPU slot in milli (0..1000).

v1 (the GPU-fit work replaces it): whole GPUs from allocatable ``nvidia.com/gpu``, the product and
memory from GPU Feature Discovery labels, MIG "mixed" resources as fixed-size bins, and shared
GPUs placed by the ``lowcarb.dev/gpu-index`` annotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler import wire
from scheduler.demand import ANN_GPU_INDEX, GPU_RESOURCE, LABEL_GPU_PRODUCT, MIG_PREFIX, PodDemand
from scheduler.quantity import QuantityError, int_value

MIN_SLOTS = 8
FULL = 1000


@dataclass(frozen=True, slots=True)
class GpuSupply:
    """GPUs a node offers: count, product, memory per GPU (MiB), MIG bins by profile."""

    count: int = 0
    product: str = ""
    memory_mib: int = 0
    mig: dict[str, int] = field(default_factory=dict)


def node_gpu_supply(node: wire.Node) -> GpuSupply:
    labels = node.metadata.labels or {}
    alloc = node.status.allocatable or node.status.capacity or {}
    try:
        count = int_value(alloc.get(GPU_RESOURCE, "0"))
    except QuantityError:
        count = 0
    mig = {}
    for res, text in alloc.items():
        if res.startswith(MIG_PREFIX):
            try:
                mig[res[len(MIG_PREFIX) :]] = int_value(text)
            except QuantityError:
                continue
    try:
        memory = int(labels.get("nvidia.com/gpu.memory", "0"))
    except ValueError:
        memory = 0
    return GpuSupply(
        count=max(count, 0), product=labels.get(LABEL_GPU_PRODUCT, ""), memory_mib=memory, mig=mig
    )


def gpu_index_of(pod: wire.Pod) -> tuple[int, ...]:
    text = (pod.metadata.annotations or {}).get(ANN_GPU_INDEX, "")
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        return ()


def free_slots(supply: GpuSupply, pods: Sequence[tuple[PodDemand, tuple[int, ...]]]) -> list[int]:
    """Free milli per GPU after ``pods``: shared pods on their recorded GPU, whole GPUs after."""
    free = [FULL] * supply.count
    whole: list[PodDemand] = []
    for demand, index in pods:
        if demand.gpus == 0:
            continue
        if demand.shares_gpu:
            slot = index[0] if index and 0 <= index[0] < supply.count else _best_fit(free, demand)
            if slot is not None:
                free[slot] -= demand.gpu_milli
        else:
            whole.append(demand)
    for demand in whole:
        need = demand.gpus
        for slot in range(supply.count):
            if need == 0:
                break
            if free[slot] == FULL:
                free[slot] = 0
                need -= 1
    return [max(f, 0) for f in free]


def _best_fit(free: list[int], demand: PodDemand) -> int | None:
    fits = [(f, i) for i, f in enumerate(free) if f >= demand.gpu_milli]
    return min(fits)[1] if fits else None
