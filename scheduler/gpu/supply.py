"""GPU supply and usage per node, and the vectorised GPU fit / placement helpers.

Supply comes from a Node: allocatable ``nvidia.com/gpu``, GPU Feature Discovery labels
(``nvidia.com/gpu.product``, ``.memory`` in MiB, ``.count``, ``.replicas``,
``nvidia.com/mig.strategy``) and MIG "mixed" resources (``nvidia.com/mig-<g>g.<mem>gb``) kept as
fixed-size bins. Usage is
rebuilt from the pods bound to the node: whole-GPU pods take fully free GPUs, a sharing pod takes
``lowcarb.dev/gpu-milli`` of the GPU named by its ``lowcarb.dev/gpu-index`` annotation (written by
the service at bind), so the per-GPU free fractions survive a restart.

Everything that runs per scheduling cycle works on numpy arrays over nodes: ``gpu_free`` is
``int32[N, G]`` (free milli per GPU slot, 0..1000; slots past a node's GPU count are 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scheduler import wire
from scheduler.demand import GPU_RESOURCE, LABEL_GPU_PRODUCT, MIG_PREFIX, PodDemand
from scheduler.names import ANN_GPU_INDEX
from scheduler.quantity import QuantityError, int_value

MILLI = 1000
FULL = MILLI
MIN_SLOTS = 8
LABEL_MEMORY = "nvidia.com/gpu.memory"
LABEL_COUNT = "nvidia.com/gpu.count"
LABEL_REPLICAS = "nvidia.com/gpu.replicas"
LABEL_MIG_STRATEGY = "nvidia.com/mig.strategy"

IntArray = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class GpuSupply:
    """What a node offers in GPUs: physical GPUs (shareable by milli) and MIG bins."""

    count: int = 0
    product: str = ""
    memory_mib: int = 0
    replicas: int = 1
    mig_strategy: str = ""
    mig: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def has_gpu(self) -> bool:
        return self.count > 0 or bool(self.mig)


def _label_int(labels: dict[str, str], key: str, notes: list[str]) -> int | None:
    text = labels.get(key)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        notes.append(f"label {key}={text!r} is not an integer; ignored")
        return None
    if value < 0:
        notes.append(f"label {key}={text!r} is negative; ignored")
        return None
    return value


def node_gpu_supply(node: wire.Node) -> GpuSupply:
    """Derive a node's GPU supply from its allocatable resources and GFD labels.

    Time-sliced GPUs (``nvidia.com/gpu.replicas`` > 1) advertise ``count * replicas`` allocatable
    GPUs; the physical count is what fractions are measured against. An unparsable label never
    fails the node: it is ignored and the reason kept in ``notes``.
    """
    labels = node.metadata.labels or {}
    alloc = node.status.allocatable or node.status.capacity or {}
    supply = GpuSupply(product=labels.get(LABEL_GPU_PRODUCT, ""))
    notes = supply.notes
    advertised = 0
    if GPU_RESOURCE in alloc:
        try:
            advertised = max(0, int_value(alloc[GPU_RESOURCE]))
        except QuantityError:
            notes.append(f"allocatable {GPU_RESOURCE}={alloc[GPU_RESOURCE]!r} is not a quantity")
    replicas = _label_int(labels, LABEL_REPLICAS, notes) or 1
    supply.replicas = max(1, replicas)
    count = _label_int(labels, LABEL_COUNT, notes)
    physical = advertised // supply.replicas if supply.replicas > 1 else advertised
    if count is not None and advertised and count != physical:
        notes.append(
            f"label {LABEL_COUNT}={count} disagrees with allocatable {GPU_RESOURCE}={advertised}"
            f" (replicas {supply.replicas}); using allocatable"
        )
    supply.count = physical
    supply.memory_mib = _label_int(labels, LABEL_MEMORY, notes) or 0
    supply.mig_strategy = labels.get(LABEL_MIG_STRATEGY, "")
    for res, text in alloc.items():
        if res.startswith(MIG_PREFIX):
            try:
                n = int_value(text)
            except QuantityError:
                notes.append(f"allocatable {res}={text!r} is not a quantity; ignored")
                continue
            if n > 0:
                supply.mig[res[len(MIG_PREFIX) :]] = n
    return supply


def gpu_index_of(pod: wire.Pod) -> tuple[int, ...]:
    """GPU indices recorded on a pod (``lowcarb.dev/gpu-index: "3"`` or ``"0,1"``); () if none."""
    text = (pod.metadata.annotations or {}).get(ANN_GPU_INDEX, "")
    try:
        out = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        return ()
    return out if all(i >= 0 for i in out) else ()


def apply_pod(free_row: IntArray, demand: PodDemand, gpu_index: Sequence[int] = ()) -> list[int]:
    """Subtract a pod's GPU usage from one node's ``free_row`` in place; return the GPUs used.

    ``gpu_index`` (from the pod's annotation) wins when it is valid for this node; otherwise whole
    GPUs come from the lowest fully free slots and a sharing pod goes to the best-fitting GPU.
    Usage that no longer fits (the node shrank) is clipped at zero, never negative.
    """
    gpus, milli = demand.gpus, demand.gpu_milli if demand.gpus else 0
    slots = len(free_row)
    if gpus <= 0 or milli <= 0 or slots == 0:  # no GPU left (a device plugin restarting)
        return []
    chosen: list[int]
    if gpu_index and len(gpu_index) >= gpus and all(i < slots for i in gpu_index):
        chosen = list(gpu_index[:gpus])
    elif gpus == 1 and milli < MILLI:
        best = int(best_fit_gpu(free_row[None, :], milli)[0])
        chosen = [best] if best >= 0 else [int(np.argmax(free_row))]
    else:
        chosen = [int(i) for i in np.flatnonzero(free_row >= milli)][:gpus]
        if len(chosen) < gpus:  # over-committed node: take the freest remaining slots
            rest = [int(i) for i in np.argsort(-free_row, kind="stable") if int(i) not in chosen]
            chosen += rest[: gpus - len(chosen)]
    for i in chosen:
        free_row[i] = max(0, int(free_row[i]) - milli)
    return chosen


def free_slots(supply: GpuSupply, pods: Sequence[tuple[PodDemand, tuple[int, ...]]]) -> list[int]:
    """Free milli per GPU after ``pods``: pods with a recorded GPU index first, then whole-GPU
    pods, then sharing pods without an index (best fit).

    Placing recorded pods first keeps a restart faithful: the annotation says where a sharing pod
    runs, and pods without one (e.g. bound by another scheduler) fill what is left.
    """
    free = np.full(supply.count, FULL, dtype=np.int32)

    def rank(item: tuple[PodDemand, tuple[int, ...]]) -> int:
        demand, index = item
        if index and len(index) >= demand.gpus:
            return 0
        return 2 if demand.shares_gpu else 1

    ordered = sorted(pods, key=rank)
    for demand, index in ordered:
        apply_pod(free, demand, index)
    return [int(f) for f in free]


# --- vectorised fit --------------------------------------------------------------------------


_BYTE_SUM = np.uint64(0x0101010101010101)  # x * this: the top byte is the sum of x's 8 bytes


def count_true(mask: BoolArray) -> IntArray:
    """Per row of a 2-D bool array, how many entries are True.

    ``mask.sum(axis=1)`` walks each short row separately (slow for thousands of 8-wide rows);
    8 bools are read as one uint64 whose byte sum one multiplication gives, other widths add
    columns.
    """
    n, width = mask.shape
    if width == 8:
        words = np.ascontiguousarray(mask).view(np.uint64).reshape(n)
        return ((words * _BYTE_SUM) >> np.uint64(56)).astype(np.int32)
    out = np.zeros(n, dtype=np.int32)
    for j in range(width):
        out += mask[:, j]
    return out


def gpus_fitting(gpu_free: IntArray, milli: int) -> IntArray:
    """Per node, how many GPUs have at least ``milli`` free."""
    return count_true(gpu_free >= milli)


def gpu_fit_mask(gpu_free: IntArray, gpus: int, milli: int) -> BoolArray:
    """Nodes with ``gpus`` GPUs each having ``milli`` free (all nodes when the pod wants none)."""
    if gpus <= 0:
        return np.ones(gpu_free.shape[0], dtype=bool)
    return gpus_fitting(gpu_free, milli) >= gpus


def model_mask(gpu_model: IntArray, models: Sequence[str], allowed: Sequence[str]) -> BoolArray:
    """Nodes whose GPU model is one of ``allowed`` (all nodes when ``allowed`` is empty)."""
    if not allowed:
        return np.ones(gpu_model.shape[0], dtype=bool)
    ok = np.array([m in allowed for m in models] + [False], dtype=bool)
    idx = np.where((gpu_model >= 0) & (gpu_model < len(models)), gpu_model, len(models))
    return ok[idx]


def best_fit_gpu(gpu_free: IntArray, milli: int) -> IntArray:
    """Per node, the GPU with the least free milli that still fits ``milli`` (-1 when none)."""
    fits = gpu_free >= milli
    masked = np.where(fits, gpu_free, np.iinfo(np.int32).max)
    best = np.argmin(masked, axis=1).astype(np.int32)
    return np.where(fits.any(axis=1), best, np.int32(-1))


def worst_fit_gpu(gpu_free: IntArray, milli: int) -> IntArray:
    """Per node, the GPU with the most free milli that fits ``milli`` (-1 when none)."""
    fits = gpu_free >= milli
    masked = np.where(fits, gpu_free, -1)
    best = np.argmax(masked, axis=1).astype(np.int32)
    return np.where(fits.any(axis=1), best, np.int32(-1))


def placed_free(gpu_free: IntArray, gpus: int, milli: int, gpu: IntArray | None = None) -> IntArray:
    """Free milli per GPU after placing the pod on every node (rows that cannot fit are unchanged).

    Whole-GPU pods take the lowest-index fully free GPUs; a sharing pod takes ``gpu[n]`` (default:
    the best-fitting GPU).
    """
    out = gpu_free.copy()
    if gpus <= 0 or milli <= 0:
        return out
    if gpus == 1 and milli < MILLI:
        choice = best_fit_gpu(gpu_free, milli) if gpu is None else gpu
        rows = np.flatnonzero(choice >= 0)
        out[rows, choice[rows]] -= milli
        return out
    full = gpu_free >= milli
    take = full & (np.cumsum(full, axis=1) <= gpus)
    ok = take.sum(axis=1) >= gpus
    out[ok] = np.where(take[ok], out[ok] - milli, out[ok])
    return out


# --- baseline GPU scores (higher is better) --------------------------------------------------

CPU_SCALE = 128_000  # milli-CPU of the largest node shape (openb: 128 cores)
GPU_SCALE = 8 * MILLI  # milli-GPU of the largest node shape (8 GPUs)


def score_bestfit(
    gpu_free: IntArray,
    cpu_free: Int64Array,
    gpus: int,
    milli: int,
    cpu_milli: int,
    cpu_scale: float = CPU_SCALE,
    gpu_scale: float = GPU_SCALE,
) -> FloatArray:
    """Best fit: least CPU and GPU left over after placement (equal weights), in [0, 1]."""
    left_cpu = (cpu_free - cpu_milli) / cpu_scale
    left_gpu = (gpu_free.sum(axis=1) - gpus * milli) / gpu_scale
    return np.asarray(1.0 - 0.5 * left_cpu - 0.5 * left_gpu, dtype=np.float64)


def score_spread(gpu_free: IntArray, gpus: int, milli: int) -> FloatArray:
    """Spread (inference replicas): most GPU left free after placement, in GPUs."""
    return np.asarray((gpu_free.sum(axis=1) - gpus * milli) / MILLI, dtype=np.float64)


def score_packing(gpu_free: IntArray, gpu_total: IntArray, gpus: int, milli: int) -> FloatArray:
    """GPU packing in three tiers, higher is better.

    1. the pod fits on already shared GPUs: 2 + (1 - free fraction left on them),
    2. it needs fully free GPUs on a node already in use: 1 + 1 / (1 + fully free GPUs used),
    3. it opens an idle node: 1 / (1 + free GPUs of the node) (small idle nodes first).
    """
    n = gpu_free.shape[0]
    if gpus <= 0 or milli <= 0:
        return np.zeros(n, dtype=np.float64)
    slot = np.arange(gpu_free.shape[1])[None, :] < gpu_total[:, None]
    full = (gpu_free >= MILLI) & slot
    n_full = full.sum(axis=1)
    idle = n_full == gpu_total
    # walk GPUs from the least free that fits (as best fit does) and count fully free ones taken
    fits = (gpu_free >= milli) & slot
    key = np.where(fits, gpu_free, np.iinfo(np.int32).max)
    order = np.argsort(key, axis=1, kind="stable")
    taken_free = np.take_along_axis(gpu_free, order, axis=1)[:, :gpus]
    taken_fits = np.take_along_axis(fits, order, axis=1)[:, :gpus]
    full_used = ((taken_free >= MILLI) & taken_fits).sum(axis=1)
    shared_left = np.where(taken_fits & (taken_free < MILLI), taken_free, 0).sum(axis=1)
    tier1 = 2.0 + 1.0 - shared_left / (MILLI * gpus)
    tier2 = 1.0 + 1.0 / (1.0 + full_used)
    tier3 = 1.0 / (1.0 + n_full)
    out = np.where(idle, tier3, np.where(full_used > 0, tier2, tier1))
    return np.asarray(out, dtype=np.float64)


# --- grouping equal rows ---------------------------------------------------------------------

_MIX = np.random.default_rng(0x10CA4B).integers(1, 2**63, size=256, dtype=np.uint64) | 1


def group_rows(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row of each distinct row of ``state`` and each row's group (``np.unique(axis=0)``
    semantics without its slow lexicographic sort: rows are hashed to one uint64, and checked)."""
    width = state.shape[1]
    if width <= _MIX.size:
        if state.dtype == np.int64 and state.flags.c_contiguous:
            words = state.view(np.uint64)  # the same bits as astype, without the copy
        else:
            words = state.astype(np.uint64)
        key = words @ _MIX[:width]  # integer matmul: wraps modulo 2**64, never BLAS
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if np.array_equal(state, state[first[inverse]]):
            return first, inverse
    _, first, inverse = np.unique(state, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)
