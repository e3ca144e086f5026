"""Load the Alibaba openb GPU trace (FGD, ATC '23) from the shared data directory.

Node CSV: ``sn,cpu_milli,memory_mib,gpu,model``. Pod CSV: ``name,cpu_milli,memory_mib,num_gpu,
gpu_milli[,gpu_spec,...]`` (the multigpu variants have only the first five columns). The files are
read from ``$LOWCARB_DATA/gpu-trace`` (default ``../shared/data``), never copied into the repo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from carbon.datadir import data_dir

TRACE_DIR = "gpu-trace"
NODE_FILE = "openb_node_list_gpu_node.csv"
POD_PREFIX = "openb_pod_list_"


class TraceError(ValueError):
    """A trace file that is missing or does not have the expected columns."""


@dataclass(frozen=True, slots=True)
class Nodes:
    names: list[str]
    cpu_milli: npt.NDArray[np.int64]
    memory_mib: npt.NDArray[np.int64]
    gpus: npt.NDArray[np.int32]
    model: list[str]


@dataclass(frozen=True, slots=True)
class Pods:
    cpu_milli: npt.NDArray[np.int64]
    memory_mib: npt.NDArray[np.int64]
    gpus: npt.NDArray[np.int32]
    gpu_milli: npt.NDArray[np.int32]  # per GPU; 0 for CPU-only pods
    spec: list[str]  # allowed models, "|"-separated, "" when unconstrained

    def __len__(self) -> int:
        return len(self.cpu_milli)

    @property
    def total_gpu_milli(self) -> npt.NDArray[np.int64]:
        return self.gpus.astype(np.int64) * self.gpu_milli


def trace_dir() -> Path | None:
    root = data_dir()
    if root is None:
        return None
    path = root / TRACE_DIR
    return path if path.is_dir() else None


def resolve_pod_file(trace: str) -> Path:
    """``default``/``gpushare40``/... name a file of the data directory; anything else is a path."""
    path = Path(trace)
    if path.suffix == ".csv" or path.exists():
        if not path.is_file():
            raise TraceError(f"--trace {trace}: no such file")
        return path
    root = trace_dir()
    if root is None:
        raise TraceError(
            "the gpu-trace data directory was not found; set LOWCARB_DATA to the shared data dir"
        )
    candidate = root / f"{POD_PREFIX}{trace}.csv"
    if not candidate.is_file():
        known = sorted(p.stem[len(POD_PREFIX) :] for p in root.glob(f"{POD_PREFIX}*.csv"))
        raise TraceError(f"--trace {trace}: unknown trace; known: {', '.join(known)}")
    return candidate


def _need(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(missing)}")


def load_nodes(path: Path | None = None) -> Nodes:
    if path is None:
        root = trace_dir()
        if root is None:
            raise TraceError("gpu-trace data directory not found; set LOWCARB_DATA")
        path = root / NODE_FILE
    df = pd.read_csv(path, dtype={"model": "string"})
    _need(df, ["sn", "cpu_milli", "memory_mib", "gpu", "model"], path)
    return Nodes(
        names=df["sn"].astype(str).tolist(),
        cpu_milli=df["cpu_milli"].to_numpy(np.int64),
        memory_mib=df["memory_mib"].to_numpy(np.int64),
        gpus=df["gpu"].to_numpy(np.int32),
        model=df["model"].fillna("").astype(str).tolist(),
    )


def load_pods(path: Path) -> Pods:
    df = pd.read_csv(path, dtype={"gpu_spec": "string"})
    _need(df, ["cpu_milli", "memory_mib", "num_gpu", "gpu_milli"], path)
    gpus = df["num_gpu"].to_numpy(np.int32)
    milli = np.where(gpus > 0, df["gpu_milli"].to_numpy(np.int32), 0).astype(np.int32)
    if ((gpus > 0) & ((milli < 1) | (milli > 1000))).any():
        raise TraceError(f"{path}: gpu_milli must be 1..1000 for GPU pods")
    if "gpu_spec" in df.columns:
        spec = df["gpu_spec"].fillna("").astype(str).tolist()
    else:
        spec = [""] * len(df)
    return Pods(
        cpu_milli=df["cpu_milli"].to_numpy(np.int64),
        memory_mib=df["memory_mib"].to_numpy(np.int64),
        gpus=gpus,
        gpu_milli=milli,
        spec=spec,
    )
