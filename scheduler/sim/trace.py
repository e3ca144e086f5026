"""Simulation input: the openb GPU trace with arrival/deletion times, its fleet split into zones.

Pods come from ``openb_pod_list_<NAME>.csv`` (or any CSV with the same columns): requests, allowed
GPU models, QoS and ``creation_time``/``deletion_time`` in seconds since trace start. Nodes come
from ``openb_node_list_gpu_node.csv``; each GPU model's nodes are shuffled (``seed``) and dealt
round-robin over the zones, so every zone gets a similar mix of GPU models. ``load_scale`` divides
arrival times (durations are kept), which multiplies the offered load. Files are read from
``$LOWCARB_DATA/gpu-trace`` (default ``../shared/data``), never copied into the repo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from carbon.datadir import data_dir
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.gpu import supply as gpu

TRACE_DIR = "gpu-trace"
NODE_FILE = "openb_node_list_gpu_node.csv"
POD_PREFIX = "openb_pod_list_"
POD_COLUMNS = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time", "deletion_time")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
MIB = 2**20

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class TraceError(ValueError):
    """A trace file that is missing or malformed (the message names the file and the fix)."""


@dataclass(frozen=True, slots=True)
class SimPods:
    """Pods of a trace as columns; times in seconds since the trace start."""

    names: list[str]
    cpu_milli: IntArray
    mem_bytes: IntArray
    gpus: IntArray
    gpu_milli: IntArray  # per GPU; 0 for CPU-only pods
    models: list[tuple[str, ...]]
    qos: list[str]
    arrival: FloatArray
    duration: FloatArray

    def __len__(self) -> int:
        return len(self.names)

    def demand(self, i: int) -> PodDemand:
        """The scheduler's view of pod ``i`` (what the extender would parse from the Pod)."""
        return PodDemand(
            uid=f"sim-{i}",
            namespace="trace",
            name=self.names[i],
            gpus=int(self.gpus[i]),
            gpu_milli=int(self.gpu_milli[i]),
            models=self.models[i],
            cpu_milli=int(self.cpu_milli[i]),
            mem_bytes=int(self.mem_bytes[i]),
        )

    @property
    def gpu_fraction(self) -> FloatArray:
        """GPUs each pod holds, shared GPUs counted fractionally."""
        return np.asarray(self.gpus * self.gpu_milli / 1000.0, dtype=np.float64)

    def head(self, n: int) -> SimPods:
        return self.take(np.arange(min(n, len(self))))

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.int64]) -> SimPods:
        rows = idx.tolist()
        return SimPods(
            names=[self.names[i] for i in rows],
            cpu_milli=self.cpu_milli[idx],
            mem_bytes=self.mem_bytes[idx],
            gpus=self.gpus[idx],
            gpu_milli=self.gpu_milli[idx],
            models=[self.models[i] for i in rows],
            qos=[self.qos[i] for i in rows],
            arrival=self.arrival[idx],
            duration=self.duration[idx],
        )

    def scaled(self, load_scale: float) -> SimPods:
        """Arrivals compressed ``load_scale`` times towards the first one; durations kept."""
        if load_scale <= 0:
            raise TraceError(f"--load-scale must be > 0 (got {load_scale}); 1 replays real times")
        if load_scale == 1 or len(self) == 0:
            return self
        t0 = float(self.arrival.min())
        return SimPods(
            self.names,
            self.cpu_milli,
            self.mem_bytes,
            self.gpus,
            self.gpu_milli,
            self.models,
            self.qos,
            t0 + (self.arrival - t0) / load_scale,
            self.duration,
        )


@dataclass(frozen=True, slots=True)
class SimNodes:
    """Nodes of the fleet with the zone each one was placed in."""

    names: list[str]
    cpu_milli: IntArray
    mem_bytes: IntArray
    gpus: IntArray
    model: list[str]
    zone: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def table(self) -> NodeTable:
        """A fresh :class:`NodeTable` of the idle fleet (zones and models in first-seen order)."""
        zones = list(dict.fromkeys(self.zone))
        models = list(dict.fromkeys(self.model))
        n = len(self)
        width = max([gpu.MIN_SLOTS, *self.gpus.tolist()])
        free = np.zeros((n, width), dtype=np.int32)
        slot = np.arange(width)[None, :] < self.gpus[:, None]
        free[slot] = gpu.MILLI
        return NodeTable(
            names=list(self.names),
            zone=np.array([zones.index(z) for z in self.zone], dtype=np.int32),
            zones=zones,
            region=list(self.zone),
            gpu_model=np.array([models.index(m) for m in self.model], dtype=np.int32),
            models=models,
            gpu_total=self.gpus.astype(np.int32),
            gpu_free=free,
            gpu_mem_mib=np.zeros(n, dtype=np.int32),
            cpu_free=self.cpu_milli.astype(np.int64).copy(),
            mem_free=self.mem_bytes.astype(np.int64).copy(),
            mig_free=np.zeros((n, 0), dtype=np.int32),
            mig_profiles=[],
        )

    def gpu_capacity(self, zones: Sequence[str]) -> FloatArray:
        """GPUs per zone, in the order of ``zones``."""
        z = np.array(self.zone)
        return np.array([float(self.gpus[z == name].sum()) for name in zones])


def trace_dir() -> Path:
    root = data_dir()
    path = root / TRACE_DIR if root is not None else None
    if path is None or not path.is_dir():
        raise TraceError(
            "the gpu-trace data directory was not found; set LOWCARB_DATA to the shared data "
            "folder that holds gpu-trace/"
        )
    return path


def resolve_pod_file(trace: str) -> Path:
    """``default``/``gpushare40``/... name a file of the data directory; a path is used as is."""
    path = Path(trace)
    if path.suffix == ".csv" or path.exists():
        if not path.is_file():
            raise TraceError(f"--trace {trace}: no such file")
        return path
    root = trace_dir()
    candidate = root / f"{POD_PREFIX}{trace}.csv"
    if not candidate.is_file():
        known = sorted(p.stem[len(POD_PREFIX) :] for p in root.glob(f"{POD_PREFIX}*.csv"))
        raise TraceError(f"--trace {trace}: unknown trace; known: {', '.join(known)}")
    return candidate


def _need(df: pd.DataFrame, columns: Sequence[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(missing)}{hint}")


def load_pods(path: Path) -> SimPods:
    """Pods with times from an openb-format CSV (rows sorted by arrival)."""
    try:
        df = pd.read_csv(path, dtype={"gpu_spec": "string", "qos": "string", "name": "string"})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read CSV: {exc}") from None
    _need(df, POD_COLUMNS, path, "; simulation needs creation_time and deletion_time (seconds)")
    gpus = df["num_gpu"].to_numpy(np.int64)
    milli = np.where(gpus > 0, df["gpu_milli"].to_numpy(np.int64), 0)
    bad = (gpus > 0) & ((milli < 1) | (milli > 1000))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise TraceError(f"{path}:{row}: gpu_milli must be 1..1000 for a pod with num_gpu > 0")
    arrival = df["creation_time"].to_numpy(np.float64)
    end = df["deletion_time"].to_numpy(np.float64)
    broken = ~np.isfinite(arrival) | ~np.isfinite(end) | (end < arrival)
    if broken.any():
        row = int(np.flatnonzero(broken)[0]) + 2
        raise TraceError(
            f"{path}:{row}: creation_time/deletion_time must be numbers with deletion >= creation"
        )
    spec = df["gpu_spec"].fillna("").astype(str) if "gpu_spec" in df else pd.Series([""] * len(df))
    qos = df["qos"].fillna("").astype(str) if "qos" in df else pd.Series([""] * len(df))
    names = (
        df["name"].astype(str) if "name" in df else pd.Series([f"pod-{i}" for i in range(len(df))])
    )
    order = np.argsort(arrival, kind="stable")
    pods = SimPods(
        names=names.tolist(),
        cpu_milli=df["cpu_milli"].to_numpy(np.int64),
        mem_bytes=df["memory_mib"].to_numpy(np.int64) * MIB,
        gpus=gpus,
        gpu_milli=milli,
        models=[tuple(m for m in s.split("|") if m) for s in spec.tolist()],
        qos=qos.tolist(),
        arrival=arrival,
        duration=end - arrival,
    )
    return pods if (order == np.arange(len(order))).all() else pods.take(order)


def load_nodes(path: Path | None = None) -> pd.DataFrame:
    """The node list CSV (default: the 1,213 GPU nodes of the openb cluster)."""
    path = path or trace_dir() / NODE_FILE
    try:
        df = pd.read_csv(path, dtype={"model": "string"})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read CSV: {exc}") from None
    _need(df, NODE_COLUMNS, path)
    return df


def place_nodes(df: pd.DataFrame, zones: Sequence[str], seed: int = 0) -> SimNodes:
    """Deal each GPU model's nodes (shuffled with ``seed``) round-robin over ``zones``."""
    if not zones:
        raise TraceError("--zones: give at least one zone")
    rng = np.random.default_rng(seed)
    model = df["model"].fillna("").astype(str).to_numpy()
    zone_of = np.empty(len(df), dtype=object)
    offset = 0
    for m in sorted(set(model.tolist())):
        rows = np.flatnonzero(model == m)
        rows = rows[rng.permutation(rows.size)]
        for k, r in enumerate(rows.tolist()):
            zone_of[r] = zones[(offset + k) % len(zones)]
        offset += rows.size  # the next model starts where this one stopped: zones stay even
    return SimNodes(
        names=df["sn"].astype(str).tolist(),
        cpu_milli=df["cpu_milli"].to_numpy(np.int64),
        mem_bytes=df["memory_mib"].to_numpy(np.int64) * MIB,
        gpus=df["gpu"].to_numpy(np.int64),
        model=model.tolist(),
        zone=[str(z) for z in zone_of],
    )
