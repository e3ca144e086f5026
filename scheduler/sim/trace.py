"""The openb GPU trace (FGD, ATC '23): the one loader of pods and nodes, and the fleet in zones.

Pods come from ``openb_pod_list_<NAME>.csv`` (or any CSV with the same columns): requests
(``memory_mib`` is read into bytes), allowed GPU models, QoS and ``creation_time``/
``deletion_time`` in seconds since trace start. :func:`read_pods` keeps the file order and
accepts files without times (the multigpu variants; the FGD protocol needs none): their times
are NaN. :func:`load_pods` is the simulator's: times required, rows sorted by arrival. Nodes come
from ``openb_node_list_gpu_node.csv`` (:func:`load_nodes`); :func:`place_nodes` shuffles each GPU
model's nodes (``seed``) and deals them round-robin over the zones, so every zone gets a similar
mix of GPU models; :func:`redraw_names` prefixes the node names to draw another fixed node order
(the crc32 of the name that fgd and lowcarb break near-ties by). ``load_scale`` divides arrival
times (durations are kept), which multiplies the offered load. Every malformed input raises
:class:`TraceError` naming the file, the line and the fix. Files are read from
``$LOWCARB_DATA/gpu-trace`` (default ``../shared/data``), never copied into the repo. Both
benchmarks (placement, fragmentation) use this module.
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
REQUEST_COLUMNS = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
TIME_COLUMNS = ("creation_time", "deletion_time")
POD_COLUMNS = (*REQUEST_COLUMNS, *TIME_COLUMNS)
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

    @property
    def total_gpu_milli(self) -> IntArray:
        """Thousandths of a GPU each pod requests in total (``gpus`` x ``gpu_milli``)."""
        return np.asarray(self.gpus * self.gpu_milli, dtype=np.int64)

    @property
    def has_times(self) -> bool:
        """Whether every pod has an arrival time and a duration (the simulator needs both)."""
        return bool(np.isfinite(self.arrival).all() and np.isfinite(self.duration).all())

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

    def gpu_capacity(self, zones: Sequence[str]) -> FloatArray:
        """GPUs per zone, in the order of ``zones``."""
        z = np.array(self.zone)
        return np.array([float(self.gpus[z == name].sum()) for name in zones])

    def table(self, zones: Sequence[str] | None = None) -> NodeTable:
        """A fresh :class:`NodeTable` of the idle fleet.

        ``zones`` fixes the order of the table's zone indices (the run's zones, so that a zone
        index means the same zone in the table, the carbon series and the accounting); zones of
        nodes not listed are appended in first-seen order. GPU models are in first-seen order.
        """
        order = list(zones) if zones is not None else []
        order.extend(z for z in dict.fromkeys(self.zone) if z not in order)
        index = {z: i for i, z in enumerate(order)}
        models = list(dict.fromkeys(self.model))
        n = len(self)
        width = max([gpu.MIN_SLOTS, *self.gpus.tolist()])
        free = np.zeros((n, width), dtype=np.int32)
        slot = np.arange(width)[None, :] < self.gpus[:, None]
        free[slot] = gpu.MILLI
        return NodeTable(
            names=list(self.names),
            zone=np.array([index[z] for z in self.zone], dtype=np.int32),
            zones=order,
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


def find_trace_dir() -> Path | None:
    """``$LOWCARB_DATA/gpu-trace`` when it exists, else None (tests skip on None)."""
    root = data_dir()
    path = root / TRACE_DIR if root is not None else None
    return path if path is not None and path.is_dir() else None


def trace_dir() -> Path:
    """``$LOWCARB_DATA/gpu-trace``; raises :class:`TraceError` saying how to set it."""
    path = find_trace_dir()
    if path is None:
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


def _read_csv(path: Path, dtype: dict[str, str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=dtype)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read CSV: {exc}") from None


def _need(df: pd.DataFrame, columns: Sequence[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(missing)}{hint}")


def _numbers(df: pd.DataFrame, column: str, path: Path, *, whole: bool) -> FloatArray:
    """Column as floats; a blank or non-numeric cell is an error naming its line."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if whole:
        bad |= np.isfinite(values) & ((values < 0) | (values != np.round(values)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        what = "a whole number >= 0" if whole else "a number"
        raise TraceError(
            f"{path}:{row}: {column} must be {what} (got {df[column].iloc[row - 2]!r})"
        )
    return values


_POD_DTYPES = {"gpu_spec": "string", "qos": "string", "name": "string"}


def read_pods(path: Path) -> SimPods:
    """Pods of an openb-format CSV in file order; times are NaN when the file has none."""
    return _pods(_read_csv(path, _POD_DTYPES), path)


def _pods(df: pd.DataFrame, path: Path) -> SimPods:
    _need(df, REQUEST_COLUMNS, path)
    cpu = _numbers(df, "cpu_milli", path, whole=True).astype(np.int64)
    mem = _numbers(df, "memory_mib", path, whole=True).astype(np.int64)
    gpus = _numbers(df, "num_gpu", path, whole=True).astype(np.int64)
    milli = np.where(gpus > 0, pd.to_numeric(df["gpu_milli"], errors="coerce").fillna(-1), 0)
    milli = np.asarray(milli, dtype=np.float64)
    bad = (gpus > 0) & ((milli < 1) | (milli > 1000) | (milli != np.round(milli)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise TraceError(f"{path}:{row}: gpu_milli must be 1..1000 for a pod with num_gpu > 0")
    n = len(df)
    if all(c in df.columns for c in TIME_COLUMNS):
        arrival = pd.to_numeric(df["creation_time"], errors="coerce").to_numpy(np.float64)
        end = pd.to_numeric(df["deletion_time"], errors="coerce").to_numpy(np.float64)
        broken = ~np.isfinite(arrival) | ~np.isfinite(end) | (end < arrival)
        if broken.any():
            row = int(np.flatnonzero(broken)[0]) + 2
            raise TraceError(
                f"{path}:{row}: creation_time/deletion_time must be numbers with "
                "deletion >= creation"
            )
    else:
        arrival = np.full(n, np.nan)
        end = np.full(n, np.nan)
    spec = df["gpu_spec"].fillna("").astype(str) if "gpu_spec" in df else pd.Series([""] * n)
    qos = df["qos"].fillna("").astype(str) if "qos" in df else pd.Series([""] * n)
    names = df["name"].astype(str) if "name" in df else pd.Series([f"pod-{i}" for i in range(n)])
    return SimPods(
        names=names.tolist(),
        cpu_milli=cpu,
        mem_bytes=mem * MIB,
        gpus=gpus,
        gpu_milli=milli.astype(np.int64),
        models=[tuple(m for m in s.split("|") if m) for s in spec.tolist()],
        qos=qos.tolist(),
        arrival=arrival,
        duration=end - arrival,
    )


def load_pods(path: Path) -> SimPods:
    """Pods with times from an openb-format CSV, sorted by arrival (what the simulator replays)."""
    df = _read_csv(path, _POD_DTYPES)
    _need(df, POD_COLUMNS, path, "; simulation needs creation_time and deletion_time (seconds)")
    pods = _pods(df, path)
    order = np.argsort(pods.arrival, kind="stable")
    return pods if (order == np.arange(len(order))).all() else pods.take(order)


def load_nodes(path: Path | None = None) -> SimNodes:
    """The node list CSV (default: the 1,213 GPU nodes of the openb cluster), zones unset."""
    path = path or trace_dir() / NODE_FILE
    df = _read_csv(path, {"model": "string", "sn": "string"})
    _need(df, NODE_COLUMNS, path)
    return SimNodes(
        names=df["sn"].astype(str).tolist(),
        cpu_milli=_numbers(df, "cpu_milli", path, whole=True).astype(np.int64),
        mem_bytes=_numbers(df, "memory_mib", path, whole=True).astype(np.int64) * MIB,
        gpus=_numbers(df, "gpu", path, whole=True).astype(np.int64),
        model=df["model"].fillna("").astype(str).tolist(),
        zone=[""] * len(df),
    )


def cut_fleet(nodes: SimNodes, share: float, seed: int = 0) -> SimNodes:
    """Keep ``share`` of each GPU model's nodes (at least one; a seeded random choice, file order
    kept), so a trace's first pods can load a fleet the way the whole trace loads the whole one."""
    if not 0 < share <= 1:
        raise TraceError(f"--fleet-share must be in (0, 1] (got {share}); 1 keeps every node")
    if share == 1:
        return nodes
    rng = np.random.default_rng([seed, 1])
    model = np.array(nodes.model, dtype=object)
    keep = np.zeros(len(nodes), dtype=bool)
    for m in sorted(set(nodes.model)):
        rows = np.flatnonzero(model == m)
        count = max(1, int(np.ceil(share * rows.size - 1e-9)))
        keep[rng.choice(rows, size=count, replace=False)] = True
    idx = np.flatnonzero(keep)
    return SimNodes(
        names=[nodes.names[i] for i in idx.tolist()],
        cpu_milli=nodes.cpu_milli[idx],
        mem_bytes=nodes.mem_bytes[idx],
        gpus=nodes.gpus[idx],
        model=[nodes.model[i] for i in idx.tolist()],
        zone=[nodes.zone[i] for i in idx.tolist()],
    )


def place_nodes(nodes: SimNodes, zones: Sequence[str], seed: int = 0) -> SimNodes:
    """Deal each GPU model's nodes (shuffled with ``seed``) round-robin over ``zones``."""
    if not zones:
        raise TraceError("--zones: give at least one zone")
    rng = np.random.default_rng(seed)
    model = np.array(nodes.model, dtype=object)
    zone_of = np.empty(len(nodes), dtype=object)
    offset = 0
    for m in sorted(set(nodes.model)):
        rows = np.flatnonzero(model == m)
        rows = rows[rng.permutation(rows.size)]
        for k, r in enumerate(rows.tolist()):
            zone_of[r] = zones[(offset + k) % len(zones)]
        offset += rows.size  # the next model starts where this one stopped: zones stay even
    return SimNodes(
        names=list(nodes.names),
        cpu_milli=nodes.cpu_milli,
        mem_bytes=nodes.mem_bytes,
        gpus=nodes.gpus,
        model=list(nodes.model),
        zone=[str(z) for z in zone_of],
    )


def redraw_names(nodes: SimNodes, draw: int) -> SimNodes:
    """``nodes`` under node-order draw ``draw``: 0 keeps the names, K > 0 prefixes each with
    ``oK-``.

    The GPU term's FGD order and the cost model's fill order break near-ties by a fixed per-node
    order, the crc32 of the node name (:meth:`NodeTable.name_order`); the trace's names are one
    draw of it. The FGD paper's simulator likewise gives the names a random prefix per seed.
    Waits and tCO2e under load move with the draw, so a comparison of fgd or lowcarb at one draw
    is one sample; ``benchmarks/placement_orders.py`` averages over several.
    """
    if draw < 0:
        raise TraceError(f"--node-order must be 0 (the trace's names) or more (got {draw})")
    if draw == 0:
        return nodes
    return SimNodes(
        names=[f"o{draw}-{n}" for n in nodes.names],
        cpu_milli=nodes.cpu_milli,
        mem_bytes=nodes.mem_bytes,
        gpus=nodes.gpus,
        model=list(nodes.model),
        zone=list(nodes.zone),
    )
