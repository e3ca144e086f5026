"""Helpers shared by the ledger tests: realistic records, an in-memory history, fixture points."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from carbon.accounting.ledger import LifecycleRecord, PlacementRecord
from carbon.types import IntensityPoint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ledger"
EM_HISTORY = FIXTURES / "electricitymaps-carbon-intensity-history.json"
GIB = 1024**3


def em_history_points() -> list[IntensityPoint]:
    """The Electricity Maps ``/v3/carbon-intensity/history`` fixture (DE, 24 hourly points)."""
    body = json.loads(EM_HISTORY.read_text())
    out = []
    for item in body["history"]:
        start = datetime.fromisoformat(item["datetime"].replace("Z", "+00:00"))
        out.append(
            IntensityPoint(
                zone=item["zone"],
                start=start,
                end=start + timedelta(hours=1),
                g_per_kwh=float(item["carbonIntensity"]),
                estimated=bool(item["isEstimated"]),
            )
        )
    return out


class ListHistory:
    """An ``IntensityHistory`` over fixed points per zone; counts calls, can be made to fail."""

    def __init__(self, points: dict[str, Sequence[IntensityPoint]], fail: bool = False) -> None:
        self.points = points
        self.fail = fail
        self.calls: list[tuple[str, datetime, datetime]] = []

    async def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        self.calls.append((zone, start, end))
        if self.fail:
            raise ConnectionError("provider unreachable")
        return [p for p in self.points.get(zone, ()) if p.end > start and p.start < end]


def hourly(zone: str, start: datetime, values: Sequence[float]) -> list[IntensityPoint]:
    """Consecutive hourly points from ``start``."""
    return [
        IntensityPoint(zone, start + timedelta(hours=i), start + timedelta(hours=i + 1), v)
        for i, v in enumerate(values)
    ]


def placement(i: int, at: float, **kw: object) -> PlacementRecord:
    """A plausible training/batch/inference decision (shape of openb trace pods)."""
    classes = ("training", "batch", "inference")
    fields: dict[str, object] = {
        "uid": f"uid-{i:06d}",
        "namespace": ("ml-research", "vision", "serving")[i % 3],
        "name": f"pod-{i:06d}",
        "at": at,
        "node": f"node-{i % 7:02d}",
        "zone": ("DE", "FR", "GB")[i % 3],
        "workload_class": classes[i % 3],
        "owner_kind": "Job",
        "owner_name": f"run-{i // 4}",
        "gpu_model": ("NVIDIA-A100-SXM4-80GB", "Tesla-V100-SXM2-16GB", "NVIDIA-L4")[i % 3],
        "gpus": 1 + i % 2,
        "gpu_milli": (1000, 1000, 460)[i % 3],
        "cpu_milli": 4000 + 2000 * (i % 4),
        "memory_bytes": (16 + 8 * (i % 3)) * GIB,
        "intensity_g_per_kwh": (350.0, 60.0, 210.0)[i % 3],
        "intensity_source": "electricitymaps",
        "intensity_age_s": 120.0,
        "scores": {"carbon": 0.8, "gpu_fit": 0.5},
        "score": 9,
        "counterfactual_g_per_kwh": 240.0,
        "counterfactual_kg": 1.5,
        "expected_kg": 1.2,
        "expected_duration_s": 7200.0,
        "candidates": 12,
    }
    fields.update(kw)
    return PlacementRecord(**fields)  # type: ignore[arg-type]


def run(uid: str, start: float, end: float) -> list[LifecycleRecord]:
    """Start and end of running for one pod, as the watch reports them."""
    return [
        LifecycleRecord(uid=uid, event="start", at=start),
        LifecycleRecord(uid=uid, event="end", at=end),
    ]
