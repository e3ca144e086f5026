"""GPU capacity by grid zone as Prometheus gauges, computed from the cluster state at scrape time.

``lowcarb_gpus_total{zone,model}`` (GPUs on the known nodes), ``lowcarb_gpus_free{zone,model}``
(whole GPUs with nothing allocated on them: what a pod asking for whole GPUs can still get) and
``lowcarb_gpu_capacity_free{zone,model}`` (free capacity in GPUs, counting the unused share of
shared GPUs). Nothing is done per request: a scrape reads the node table the state keeps current
(only the nodes whose pods changed are recomputed) and sums its columns with numpy. The serving
process points the one registered collector at its state (:func:`watch`); without one, or with no
GPU node known, the families are empty.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator

import numpy as np
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import distinct_codes
from scheduler.gpu.supply import MILLI

UNKNOWN_ZONE = "unknown"
_FAMILIES = (
    ("lowcarb_gpus_total", "GPUs on the nodes lowcarb knows, by grid zone and GPU model"),
    (
        "lowcarb_gpus_free",
        "Whole GPUs with nothing allocated (a whole-GPU pod can still get them), by zone and model",
    ),
    (
        "lowcarb_gpu_capacity_free",
        "Free GPU capacity in GPUs, the unused share of shared GPUs included, by zone and model",
    ),
)


def gpus_by_zone(state: ClusterState) -> dict[tuple[str, str], tuple[int, int, float]]:
    """``{(zone, model): (total, whole GPUs free, free capacity in GPUs)}`` over GPU nodes (one
    group-by over the table's columns: a scrape at 5,000 nodes must not hold the event loop)."""
    table = state.full_table()
    rows = np.flatnonzero(table.gpu_total > 0)
    if not rows.size:
        return {}
    total = table.gpu_total[rows]
    slots = np.arange(table.gpu_free.shape[1]) < total[:, None]
    free = np.where(slots, table.gpu_free[rows], 0)
    n_models = max(len(table.models), 1)
    # one code per (zone, model) pair; zone -1 (unknown) gets code block 0
    code = (table.zone[rows].astype(np.int64) + 1) * n_models + table.gpu_model[rows]
    groups, inverse = distinct_codes(code)  # the pairs present
    sums = [
        np.bincount(inverse, weights=column, minlength=groups.size)
        for column in (total, (free >= MILLI).sum(axis=1), free.sum(axis=1) / MILLI)
    ]
    out: dict[tuple[str, str], tuple[int, int, float]] = {}
    for g, c in enumerate(groups.tolist()):
        zone = c // n_models - 1
        name = table.zones[zone] if zone >= 0 else None
        key = (name or UNKNOWN_ZONE, table.models[c % n_models] or "unknown")
        t, w, f = out.get(key, (0, 0, 0.0))  # "" and no zone both read "unknown"
        out[key] = (t + round(sums[0][g]), w + round(sums[1][g]), f + float(sums[2][g]))
    return out


class GpuCollector(Collector):
    """Reads the watched state at every scrape (a weak reference: a stopped runtime goes away)."""

    def __init__(self) -> None:
        self._state: weakref.ref[ClusterState] | None = None
        self._lock = threading.Lock()

    def watch(self, state: ClusterState | None) -> None:
        with self._lock:
            self._state = weakref.ref(state) if state is not None else None

    def unwatch(self, state: ClusterState) -> None:
        """Forget ``state`` if it is still the one read (a newer runtime may have replaced it)."""
        with self._lock:
            if self._state is not None and self._state() is state:
                self._state = None

    def describe(self) -> Iterator[Metric]:
        for name, doc in _FAMILIES:
            yield GaugeMetricFamily(name, doc, labels=["zone", "model"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            state = self._state() if self._state is not None else None
        families = [GaugeMetricFamily(n, d, labels=["zone", "model"]) for n, d in _FAMILIES]
        if state is not None:
            for (zone, model), values in sorted(gpus_by_zone(state).items()):
                for family, value in zip(families, values, strict=True):
                    family.add_metric([zone, model], value)
        yield from families


COLLECTOR = GpuCollector()
REGISTRY.register(COLLECTOR)


def watch(state: ClusterState | None) -> None:
    """Export the GPUs of ``state`` (the serving process's) from now on; None: stop."""
    COLLECTOR.watch(state)


def unwatch(state: ClusterState) -> None:
    """Stop exporting ``state`` if it is still the one exported (a newer runtime may be)."""
    COLLECTOR.unwatch(state)
