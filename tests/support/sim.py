"""Small synthetic fleets, traces and series for the simulator tests (answers known by hand)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from carbon.energy import PowerModel
from carbon.series import HourlySeries
from scheduler.sim.trace import SimNodes, SimPods

T0 = 1_640_995_200.0  # 2022-01-01T00:00:00Z
HOUR = 3600.0
GIB = 2**30

# one GPU model at 250 W, no CPU/memory power, PUE 1.0: a 1-GPU pod-hour is 0.25 kWh
POWER = PowerModel.model_validate(
    {
        "builtinGpus": False,
        "gpus": [
            {"match": "^G2$", "watts": 250, "relativeSpeed": 1.0},
            {"match": "^T4$", "watts": 60, "relativeSpeed": 0.5},
        ],
        "defaultGpu": {"match": ".*", "watts": 250},
        "cpuWattsPerCore": 0.0,
        "memoryWattsPerGiB": 0.0,
        "pue": 1.0,
    }
)


def nodes(
    zones: Sequence[str], gpus: int = 1, cpu_milli: int = 8000, model: str = "G2"
) -> SimNodes:
    """One node per entry of ``zones`` (a zone may repeat), each with ``gpus`` GPUs."""
    n = len(zones)
    return SimNodes(
        names=[f"node-{i}" for i in range(n)],
        cpu_milli=np.full(n, cpu_milli, dtype=np.int64),
        mem_bytes=np.full(n, 64 * GIB, dtype=np.int64),
        gpus=np.full(n, gpus, dtype=np.int64),
        model=[model] * n,
        zone=list(zones),
    )


def pods(
    arrival_h: Sequence[float],
    duration_h: Sequence[float],
    *,
    gpus: int = 1,
    milli: int = 1000,
    qos: str = "LS",
    cpu_milli: int = 1000,
) -> SimPods:
    """Identical pods arriving at ``T0 + arrival_h`` hours and running ``duration_h`` hours."""
    n = len(arrival_h)
    return SimPods(
        names=[f"pod-{i}" for i in range(n)],
        cpu_milli=np.full(n, cpu_milli, dtype=np.int64),
        mem_bytes=np.full(n, GIB, dtype=np.int64),
        gpus=np.full(n, gpus, dtype=np.int64),
        gpu_milli=np.full(n, milli if gpus else 0, dtype=np.int64),
        models=[()] * n,
        qos=[qos] * n,
        arrival=T0 + np.asarray(arrival_h, dtype=np.float64) * HOUR,
        duration=np.asarray(duration_h, dtype=np.float64) * HOUR,
    )


def series(zone: str, values: Sequence[float], hours: int = 48) -> HourlySeries:
    """Hourly series from T0: ``values`` repeated to ``hours`` entries."""
    vals = np.resize(np.asarray(values, dtype=np.float64), hours)
    starts = T0 + np.arange(hours, dtype=np.float64) * HOUR
    return HourlySeries(zone, starts, vals.astype(np.float64), HOUR, f"test:{zone}")
