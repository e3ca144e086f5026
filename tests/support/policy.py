"""Shared helpers of the policy tests: a carbon view with fixed values and forecasts, node tables,
pods built from the recorded fixtures."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from carbon.types import Reading, SignalKind, ZoneSeries
from scheduler import wire
from scheduler.cluster.table import NodeTable

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policy"
POLICIES = ROOT / "policies"


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class View:
    """A carbon view: a latest value per zone, and optionally an hourly forecast per zone."""

    def __init__(
        self,
        latest: dict[str, float],
        forecast: dict[str, list[float]] | None = None,
        *,
        start_s: float = 0.0,
        source: str = "test",
        age_s: float = 0.0,
    ) -> None:
        self.latest = latest
        self.forecasts = forecast or {}
        self.start_s = start_s
        self.source = source
        self.age_s = age_s

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        g = self.latest.get(zone)
        if g is None:
            return None
        return Reading(zone=zone, g_per_kwh=g, source=self.source, age_s=self.age_s)

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        latest = self.reading(zone, kind)
        hours = self.forecasts.get(zone)
        if latest is None or not hours:
            return latest
        # time-weighted mean of hourly values over [start_s, end_s); the latest value past the end
        total, t = 0.0, start_s
        while t < end_s:
            i = int((t - self.start_s) // 3600)
            nxt = min(end_s, self.start_s + (i + 1) * 3600)
            g = hours[i] if 0 <= i < len(hours) else latest.g_per_kwh
            total += g * (nxt - t)
            t = nxt
        mean = total / (end_s - start_s)
        return Reading(zone=zone, g_per_kwh=mean, source=self.source, age_s=self.age_s)

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        return None


Row = tuple[str, str | None, str, str, int]


def node_table(rows: Sequence[Row]) -> NodeTable:
    """Rows of (name, zone, region, GPU product, GPUs); every GPU free, plenty of CPU and memory."""
    zones: list[str] = []
    models: list[str] = []
    zone = []
    model = []
    for _, z, _, product, _ in rows:
        if z is None:
            zone.append(-1)
        else:
            if z not in zones:
                zones.append(z)
            zone.append(zones.index(z))
        if product not in models:
            models.append(product)
        model.append(models.index(product))
    n = len(rows)
    width = max(8, *(r[4] for r in rows))
    free = np.zeros((n, width), dtype=np.int32)
    for i, r in enumerate(rows):
        free[i, : r[4]] = 1000
    return NodeTable(
        names=[r[0] for r in rows],
        zone=np.array(zone, dtype=np.int32),
        zones=zones,
        region=[r[2] for r in rows],
        gpu_model=np.array(model, dtype=np.int32),
        models=models,
        gpu_total=np.array([r[4] for r in rows], dtype=np.int32),
        gpu_free=free,
        gpu_mem_mib=np.full(n, 81920, dtype=np.int32),
        cpu_free=np.full(n, 192_000, dtype=np.int64),
        mem_free=np.full(n, 2**41, dtype=np.int64),
        mig_free=np.zeros((n, 0), dtype=np.int32),
        mig_profiles=[],
    )


def recorded_pod(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str | None = None,
    owners: list[tuple[str, str]] | None = None,
    name: str | None = None,
) -> wire.Pod:
    """The recorded pod ``e2e/train-h100`` (4 GPUs, 8 CPUs, 64 GiB), with metadata replaced."""
    data = copy.deepcopy(fixture_json("pods-get.json"))
    meta = data["metadata"]
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if namespace is not None:
        meta["namespace"] = namespace
    if name is not None:
        meta["name"] = name
        meta["uid"] = f"uid-{name}"
    if owners is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": k, "name": n, "uid": f"{k}-{n}", "controller": True}
            for k, n in owners
        ]
    return msgspec.convert(data, wire.Pod)
