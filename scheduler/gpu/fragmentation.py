"""GPU fragmentation of nodes for an expected workload, and its change when a pod is placed (FGD).

Fragmentation Gradient Descent (Weng et al., USENIX ATC '23) measures, for a node n and a typical
task m of the expected workload: if m cannot run on n (CPU, GPU count, per-GPU fraction or GPU
model), all of n's free GPU milli is fragment; if it can, only the slivers on GPUs whose free milli
is below m's per-GPU demand are. A node's fragmentation is the popularity-weighted sum over the
typical tasks; FGD places a pod on the node (and, for a sharing pod, the GPU) whose fragmentation
grows least. Memory is not part of the measure.

Everything is vectorised over nodes. A node's fragmentation depends only on its shape (free milli
per GPU, free CPU, GPU model), so the placement delta is computed once per distinct candidate
shape: GPUs of a node with equal free milli give the same outcome and are evaluated once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.gpu.supply import MILLI, group_rows, placed_free

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TaskShape:
    """One typical task: CPU (milli), GPUs, milli per GPU (0 for CPU-only), allowed GPU models."""

    cpu_milli: int
    gpus: int
    milli: int
    models: tuple[str, ...] = ()

    @property
    def uses_gpu(self) -> bool:
        return self.gpus > 0 and self.milli > 0


@dataclass(frozen=True, slots=True)
class Workload:
    """The expected workload: typical task shapes and their popularity (weights sum to 1)."""

    shapes: tuple[TaskShape, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.weights):
            raise ValueError("Workload: shapes and weights must have the same length")
        if not self.shapes:
            raise ValueError("Workload: at least one task shape is needed")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("Workload: weights must be >= 0 and sum to more than 0")


#: Fragmentation values are rounded to this many decimals of a milli-GPU: summation order must
#: not make two equally good nodes look different (their tie is broken by the caller).
ROUND_DIGITS = 6

_MEMO_SHAPES = 65_536  # (pod, node shape) outcomes remembered in all (~15 MB at most)

#: Used before any pod has been seen: one whole GPU, so FGD keeps whole GPUs free.
DEFAULT_WORKLOAD = Workload(shapes=(TaskShape(0, 1, MILLI),), weights=(1.0,))


def model_matches(wanted: str, product: str) -> bool:
    """Does a requested model name match a node's ``nvidia.com/gpu.product``?

    Case-insensitive; either the whole product (``NVIDIA-A100-SXM4-80GB``) or one of its ``-``/``_``
    /space separated tokens (``A100``) must equal the request, so ``A10`` never matches ``A100``.
    """
    w = wanted.strip().lower()
    p = product.strip().lower()
    if not w or not p:
        return False
    if w == p:
        return True
    return w in p.replace("_", "-").replace(" ", "-").split("-")


class FragmentationModel:
    """FGD fragmentation of node shapes for one :class:`Workload`."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        weights = np.asarray(workload.weights, dtype=np.float64)
        weights = weights / weights.sum()
        gpu_tasks = [i for i, s in enumerate(workload.shapes) if s.uses_gpu]
        self._tasks = [workload.shapes[i] for i in gpu_tasks]
        self._p = weights[gpu_tasks]
        self._cpu = np.array([s.cpu_milli for s in self._tasks], dtype=np.int64)
        self._k = np.array([s.gpus for s in self._tasks], dtype=np.int32)
        milli = np.array([s.milli for s in self._tasks], dtype=np.int32)
        self._u, self._ui = np.unique(milli, return_inverse=True)
        self._cpu_sorted = np.sort(self._cpu)
        self._access: dict[tuple[str, ...], BoolArray] = {}
        # (models, pod GPUs, milli per GPU) -> shape key -> (fragmentation increase, GPU)
        self._memo: dict[tuple[tuple[str, ...], int, int], dict[bytes, tuple[float, int]]] = {}
        self._memo_size = 0

    def _access_for(self, models: Sequence[str]) -> BoolArray:
        """[len(models) + 1, M] task m may run on model index i (last row: unknown model)."""
        key = tuple(models)
        acc = self._access.get(key)
        if acc is None:
            acc = np.ones((len(key) + 1, len(self._tasks)), dtype=bool)
            for j, task in enumerate(self._tasks):
                if task.models:
                    for i, product in enumerate(key):
                        acc[i, j] = any(model_matches(w, product) for w in task.models)
                    acc[len(key), j] = False
            self._access[key] = acc
        return acc

    def node_frag(
        self,
        gpu_free: IntArray,
        cpu_free: Int64Array,
        gpu_model: IntArray,
        models: Sequence[str],
    ) -> FloatArray:
        """Expected fragmented GPU milli of each node shape (rows of ``gpu_free``)."""
        free = gpu_free.astype(np.int32, copy=False)
        total = free.sum(axis=1, dtype=np.int64).astype(np.float64)
        if not self._tasks:
            return total
        # sort each node's GPUs by free milli (descending): the GPUs that fit a per-GPU demand u
        # are a prefix, so a count and a prefix sum answer every u at once
        desc = -np.sort(-free, axis=1)
        prefix = np.zeros((free.shape[0], free.shape[1] + 1), dtype=np.int64)
        np.cumsum(desc, axis=1, out=prefix[:, 1:])
        cnt = (desc[:, :, None] >= self._u[None, None, :]).sum(axis=1)  # [B, U] GPUs that fit
        usable = np.take_along_axis(prefix, cnt, axis=1)  # [B, U] milli on those GPUs
        acc = self._access_for(models)
        idx = np.where((gpu_model >= 0) & (gpu_model < len(models)), gpu_model, len(models))
        ok = acc[idx]  # [B, M]
        ok &= cpu_free[:, None] >= self._cpu[None, :]
        ok &= cnt[:, self._ui] >= self._k[None, :]
        # milli a typical task can still use (no BLAS: one core, deterministic summation order)
        kept = np.where(ok, usable[:, self._ui] * self._p[None, :], 0.0).sum(axis=1)
        # round away float noise so equal shapes give bit-equal values (ties stay ties)
        return np.round(total - kept, ROUND_DIGITS)

    def placement_delta(
        self,
        gpu_free: IntArray,
        cpu_free: Int64Array,
        gpu_model: IntArray,
        models: Sequence[str],
        gpus: int,
        milli: int,
        cpu_milli: int,
        rows: IntArray | None = None,
    ) -> tuple[FloatArray, IntArray]:
        """Fragmentation increase if the pod goes to each node, and the GPU it would use there.

        Rows not in ``rows`` (default: all) and rows where the pod's GPUs do not fit get ``inf``
        and GPU -1. For whole-GPU pods the GPU is the first one taken (-1 for CPU-only pods).
        """
        n = gpu_free.shape[0]
        delta = np.full(n, np.inf, dtype=np.float64)
        choice = np.full(n, -1, dtype=np.int32)
        sel = np.arange(n, dtype=np.intp) if rows is None else np.asarray(rows, dtype=np.intp)
        if sel.size == 0:
            return delta, choice
        free = gpu_free.take(sel, axis=0)  # = gpu_free[sel], much faster for 2-D rows
        cpu = cpu_free[sel]
        model = gpu_model[sel]
        # the outcome depends on the free milli per GPU, the model, and the CPU only through
        # which typical tasks fit before and after: evaluate each distinct shape once
        first, inverse, state = self._shapes(free, cpu, cpu - cpu_milli, model, len(models))
        d, c = self._delta_cached(
            state[first], free[first], cpu[first], model[first], models, gpus, milli, cpu_milli
        )
        delta[sel] = d[inverse]
        choice[sel] = c[inverse]
        return delta, choice

    def _delta_cached(
        self,
        shapes: Int64Array,
        free: IntArray,
        cpu: Int64Array,
        model: IntArray,
        models: Sequence[str],
        gpus: int,
        milli: int,
        cpu_milli: int,
    ) -> tuple[FloatArray, IntArray]:
        """``_delta`` of distinct shapes, remembered per (models, pod GPUs) and shape: a shape's
        outcome never changes for this workload, and the same few shapes recur every cycle."""
        if self._memo_size > _MEMO_SHAPES:  # bounded: forget all, relearn the few in use
            self._memo.clear()
            self._memo_size = 0
        memo = self._memo.setdefault((tuple(models), gpus, milli), {})
        keys = [row.tobytes() for row in shapes]
        hits = [memo.get(k) for k in keys]
        todo = [i for i, hit in enumerate(hits) if hit is None]
        if todo:
            rows = np.asarray(todo, dtype=np.intp)
            d_new, c_new = self._delta(
                free[rows], cpu[rows], model[rows], models, gpus, milli, cpu_milli
            )
            for i, d_i, c_i in zip(todo, d_new.tolist(), c_new.tolist(), strict=True):
                hits[i] = memo[keys[i]] = (d_i, c_i)
            self._memo_size += len(todo)
        found = [h for h in hits if h is not None]
        delta = np.array([h[0] for h in found], dtype=np.float64)
        choice = np.array([h[1] for h in found], dtype=np.int32)
        return delta, choice

    def _shapes(
        self,
        free: IntArray,
        cpu: Int64Array,
        cpu_after: Int64Array,
        model: IntArray,
        n_models: int,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Int64Array]:
        """First row of each distinct node shape, each row's shape, and each row's shape key
        (free milli per GPU, CPU tier before and after the pod, model; see
        ``placement_delta``)."""
        state = np.empty((free.shape[0], free.shape[1] + 3), dtype=np.int64)
        state[:, : free.shape[1]] = free
        state[:, -3] = np.searchsorted(self._cpu_sorted, cpu, side="right")
        state[:, -2] = np.searchsorted(self._cpu_sorted, cpu_after, side="right")
        state[:, -1] = np.where((model >= 0) & (model < n_models), model, n_models)
        first, inverse = group_rows(state)
        return first, inverse, state

    def _delta(
        self,
        free: IntArray,
        cpu: Int64Array,
        model: IntArray,
        models: Sequence[str],
        gpus: int,
        milli: int,
        cpu_milli: int,
    ) -> tuple[FloatArray, IntArray]:
        """``placement_delta`` over every row of ``free`` (one row per distinct shape)."""
        n = free.shape[0]
        delta = np.full(n, np.inf, dtype=np.float64)
        choice = np.full(n, -1, dtype=np.int32)
        before = self.node_frag(free, cpu, model, models)
        cpu_after = cpu - cpu_milli
        if gpus <= 0 or milli <= 0:
            after = self.node_frag(free, cpu_after, model, models)
            delta[:] = np.round(after - before, ROUND_DIGITS)
            return delta, choice
        if gpus == 1 and milli < MILLI:
            # each distinct free value of a node is one candidate (equal GPUs, equal outcome)
            width = free.shape[1]
            fits = free >= milli
            same = free[:, :, None] == free[:, None, :]
            earlier = np.tril(np.ones((width, width), dtype=bool), k=-1)
            dup = (same & earlier[None, :, :]).any(axis=2)
            r, g = np.nonzero(fits & ~dup)
            if r.size == 0:
                return delta, choice
            states = free[r].copy()
            states[np.arange(r.size), g] -= milli
            after = self.node_frag(states, cpu_after[r], model[r], models)
            d = np.round(after - before[r], ROUND_DIGITS)
            # per row, the candidate with the least increase (lowest GPU index on ties)
            order = np.lexsort((g, d, r))
            first = np.concatenate(([True], r[order][1:] != r[order][:-1]))
            best = order[first]
            delta[r[best]] = d[best]
            choice[r[best]] = g[best]
            return delta, choice
        ok = (free >= milli).sum(axis=1) >= gpus
        if not ok.any():
            return delta, choice
        states = placed_free(free[ok], gpus, milli)
        after = self.node_frag(states, cpu_after[ok], model[ok], models)
        delta[ok] = np.round(after - before[ok], ROUND_DIGITS)
        choice[ok] = np.argmax(free[ok] >= milli, axis=1)
        return delta, choice
