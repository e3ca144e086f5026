"""Shared helpers of the policy tests: node tables, pods built from the recorded fixtures.

(Carbon views with fixed values and forecasts: :class:`carbon.testing.FixedView`.)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from scheduler import wire
from scheduler.cluster.table import NodeTable

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policy"
POLICIES = ROOT / "policies"


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


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
