"""FGD deltas remembered per cluster-state row, so a cycle recomputes only the rows that changed.

kube-scheduler asks about the same thousands of nodes cycle after cycle, and between two cycles a
burst of pods changes one or two of them (the node the last pod went to). The FGD delta of a row
depends only on that row's free GPUs, free CPU and GPU model, on the pod's shape and on the
expected workload (the :class:`~scheduler.gpu.fragmentation.FragmentationModel`); a table taken
from the cluster state says where each row comes from and its version then
(:class:`~scheduler.cluster.table.RowOrigin`). :class:`FgdRows` keeps, per pod shape and state
table, every row's delta and GPU choice with the version it was computed at, and asks the model
only for rows whose version moved: the same numbers as computing them all, for the price of two
gathers. Tables without an origin (the simulator's, /explain's own) are computed in full.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from scheduler.cluster.table import NodeTable
from scheduler.gpu.fragmentation import FragmentationModel

_ENTRIES = 16  # pod shapes x state tables remembered (3 arrays over the state's rows each)


@dataclass(slots=True)
class _Rows:
    frag: FragmentationModel  # the model the values were computed with
    versions: np.ndarray  # int64 per state row (-1: never computed)
    delta: np.ndarray  # float64 milli-GPUs of fragmentation added (inf: does not fit)
    choice: np.ndarray  # int32 GPU the pod would take (-1: none)


class FgdRows:
    """Per-row FGD results by (state table, pod shape), recomputed only where a row changed."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[object, ...], _Rows] = OrderedDict()
        self._lock = threading.Lock()  # the extender's loop and /explain's threads share it

    def placement_delta(
        self,
        frag: FragmentationModel,
        table: NodeTable,
        gpus: int,
        milli: int,
        cpu_milli: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``frag.placement_delta`` over ``table``'s rows (delta, GPU choice)."""
        origin = table.origin
        if origin is None:
            t = table
            return frag.placement_delta(
                t.gpu_free, t.cpu_free, t.gpu_model, t.models, gpus, milli, cpu_milli
            )
        key = (origin.epoch, tuple(table.models), gpus, milli, cpu_milli)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.frag is not frag:
                entry = _Rows(
                    frag,
                    np.full(origin.size, -1, dtype=np.int64),
                    np.full(origin.size, np.inf, dtype=np.float64),
                    np.full(origin.size, -1, dtype=np.int32),
                )
                self._entries[key] = entry
                while len(self._entries) > _ENTRIES:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            stale = np.flatnonzero(entry.versions[origin.rows] != origin.versions)
            if stale.size:
                delta, choice = frag.placement_delta(
                    table.gpu_free.take(stale, axis=0),
                    table.cpu_free[stale],
                    table.gpu_model[stale],
                    table.models,
                    gpus,
                    milli,
                    cpu_milli,
                )
                at = origin.rows[stale]
                entry.delta[at] = delta
                entry.choice[at] = choice
                entry.versions[at] = origin.versions[stale]
            return entry.delta[origin.rows], entry.choice[origin.rows]
