"""The node table: what every known node offers and has free, as numpy columns over nodes.

Row ``i`` of every column describes ``names[i]``: grid zone, region, GPU model, count, memory and
free milli per GPU slot, free CPU, memory and MIG bins. The cluster state
(:class:`scheduler.cluster.state.ClusterState`) keeps one table over all nodes; a scheduling cycle
takes the rows of its candidates (:meth:`NodeTable.take`: copies, so terms may read them while the
state changes) and terms work on whole columns. :meth:`NodeTable.explain` gives a filter's
per-node reasons lazily (:class:`LazyReasons`), one ``why`` call per distinct GPU state instead of
one per node.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scheduler.gpu import supply as gpu

GPU_STATE_COLUMNS = ("gpu_model", "gpu_total", "gpu_mem_mib", "gpu_free", "mig_free")


@dataclass(frozen=True, slots=True, eq=False)
class RowOrigin:
    """Where a table's rows come from in the cluster state's table, and each row's version then.

    ``epoch`` names the state's table (a new one when the node set changes); ``rows[i]`` is row
    ``i``'s index there (of ``size`` rows) and ``versions[i]`` that row's version when it was
    taken (bumped whenever the row's content changes). A term may remember a per-row result by
    (epoch, row, version) and recompute only rows whose version moved
    (:mod:`scheduler.terms.fgd_rows`). The state's own table holds the live version array.
    """

    epoch: int
    size: int
    rows: np.ndarray  # intp
    versions: np.ndarray  # int64

    def take(self, idx: np.ndarray) -> RowOrigin:
        """The origin of ``take(idx)``'s rows (versions copied: a snapshot)."""
        return RowOrigin(self.epoch, self.size, _rows(self.rows, idx), _rows(self.versions, idx))


@dataclass(slots=True)
class NodeTable:
    """Columns over nodes; row ``i`` of every array describes ``names[i]``."""

    names: list[str]
    zone: np.ndarray  # int32 index into zones (-1: unknown zone)
    zones: list[str]
    region: list[str]
    gpu_model: np.ndarray  # int32 index into models
    models: list[str]
    gpu_total: np.ndarray  # int32 GPUs on the node (whole-GPU resource)
    gpu_free: np.ndarray  # int32 [N, G] free milli per GPU slot (slots >= gpu_total are 0)
    gpu_mem_mib: np.ndarray  # int32 memory per GPU
    cpu_free: np.ndarray  # int64 milli
    mem_free: np.ndarray  # int64 bytes
    mig_free: np.ndarray  # int32 [N, P]
    mig_profiles: list[str]
    names_obj: np.ndarray | None = field(default=None, repr=False, compare=False)
    region_obj: np.ndarray | None = field(default=None, repr=False, compare=False)
    order_obj: np.ndarray | None = field(default=None, repr=False, compare=False)
    origin: RowOrigin | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    def allocated_gpu_share(self) -> float:
        """Allocated share of these nodes' GPUs, 0..1 (0 when they have none)."""
        total = int(self.gpu_total.sum(dtype=np.int64))  # integer sums: exact, and no float copy
        if total <= 0:
            return 0.0
        free = int(np.maximum(self.gpu_free, 0).sum(dtype=np.int64)) / 1000.0
        return float(min(max(1.0 - free / total, 0.0), 1.0))

    def take(self, idx: np.ndarray, like: NodeTable | None = None) -> NodeTable:
        """The rows ``idx`` (numpy fancy indexing: copies, so callers may not mutate the base).

        ``like``: an earlier ``take`` of the same rows whose names and regions are still right
        (they change only when the node set does); its lists are copied instead of rebuilt.
        """
        if like is not None:
            names, region = like.name_array(), like.region_array()
            name_list, region_list, order = list(like.names), list(like.region), like.name_order()
        else:
            names, region = _rows(self.name_array(), idx), _rows(self.region_array(), idx)
            name_list, region_list = names.tolist(), region.tolist()
            order = _rows(self.name_order(), idx)
        return NodeTable(
            names=name_list,
            zone=_rows(self.zone, idx),
            zones=self.zones,
            region=region_list,
            gpu_model=_rows(self.gpu_model, idx),
            models=self.models,
            gpu_total=_rows(self.gpu_total, idx),
            gpu_free=_rows(self.gpu_free, idx),
            gpu_mem_mib=_rows(self.gpu_mem_mib, idx),
            cpu_free=_rows(self.cpu_free, idx),
            mem_free=_rows(self.mem_free, idx),
            mig_free=_rows(self.mig_free, idx),
            mig_profiles=self.mig_profiles,
            names_obj=names,
            region_obj=region,
            order_obj=order,
            origin=None if self.origin is None else self.origin.take(idx),
        )

    def name_array(self) -> np.ndarray:
        """``names`` as a numpy object array (built once), so ``take`` never loops in Python."""
        if self.names_obj is None or len(self.names_obj) != len(self.names):
            self.names_obj = _object_array(self.names)
        return self.names_obj

    def name_order(self) -> np.ndarray:
        """A fixed pseudo-random value in [0, 1) per node name (crc32; the same every cycle),
        computed once per cached table and carried along by ``take``."""
        if self.order_obj is None or len(self.order_obj) != len(self.names):
            self.order_obj = np.array(
                [zlib.crc32(n.encode()) / 2**32 for n in self.names], dtype=np.float64
            )
        return self.order_obj

    def region_array(self) -> np.ndarray:
        if self.region_obj is None or len(self.region_obj) != len(self.region):
            self.region_obj = _object_array(self.region)
        return self.region_obj

    def explain(
        self,
        rows: np.ndarray,
        why: Callable[[int], str],
        columns: Sequence[str] = GPU_STATE_COLUMNS,
    ) -> dict[int, str]:
        """``{row: why(row)}`` for ``rows``, calling ``why`` once per distinct state, and only
        when the mapping is first read (prioritize never reads a filter's reasons).

        ``why`` must depend only on ``columns`` of the row (default: GPU model, count, memory,
        free milli per GPU and MIG bins), so rows with equal values share one answer: the
        thousands of nodes a filter rejects fall into a few dozen states, and FailedNodes costs
        a few ``why`` calls instead of one per node. The table must not change meanwhile (terms
        get copies from ``take``).
        """
        rows = np.asarray(rows, dtype=np.intp)
        if rows.size == 0:
            return {}
        return LazyReasons(lambda: self._explain_now(rows, why, columns))

    def _explain_now(
        self, rows: np.ndarray, why: Callable[[int], str], columns: Sequence[str]
    ) -> dict[int, str]:
        parts = [getattr(self, c)[rows].reshape(rows.size, -1) for c in columns]
        state = np.concatenate([p.astype(np.int64, copy=False) for p in parts], axis=1)
        first, inverse = gpu.group_rows(state)
        texts = _object_array([why(int(rows[k])) for k in first.tolist()])
        return dict(zip(rows.tolist(), texts[inverse.reshape(-1)].tolist(), strict=True))

    def zone_names(self) -> list[str | None]:
        return [self.zones[z] if z >= 0 else None for z in self.zone.tolist()]


class LazyReasons(dict[int, str]):
    """A ``dict`` whose items are computed on first use (any read or write fills it first).

    A real dict subclass, so it passes wherever a term's ``dict[int, str]`` of reasons goes;
    every dict method that reads or writes is routed through :meth:`_filled`. C encoders that
    read a dict's storage directly (``json.dumps``, ``msgspec``) see it empty until then:
    encode ``dict(reasons)``. :class:`scheduler.scoring.Evaluation` hands out a plain dict.
    """

    __slots__ = ("_compute", "_plain")

    def __init__(self, compute: Callable[[], dict[int, str]]) -> None:
        super().__init__()
        self._compute: Callable[[], dict[int, str]] | None = compute
        self._plain: dict[int, str] = {}

    def _filled(self) -> LazyReasons:
        compute = self._compute
        if compute is not None:
            self._compute = None
            self._plain = compute()
            dict.update(self, self._plain)
        return self

    def plain(self) -> dict[int, str]:
        """The reasons as computed, a plain dict (not to be changed): reads at C speed, not
        through the wrappers (a filter reads thousands of rejected rows one by one)."""
        self._filled()
        return self._plain


def _lazy(name: str) -> Callable[..., Any]:
    method = getattr(dict, name)

    def call(self: LazyReasons, *args: Any, **kwargs: Any) -> Any:
        return method(self._filled(), *args, **kwargs)

    call.__name__ = name
    return call


for _name in (
    "__getitem__", "__contains__", "__iter__", "__len__", "__eq__", "__ne__", "__repr__",
    "__or__", "__ror__", "__ior__", "__setitem__", "__delitem__", "__reversed__", "get",
    "keys", "values", "items", "copy", "pop", "popitem", "setdefault", "update", "clear",
):  # fmt: skip
    setattr(LazyReasons, _name, _lazy(_name))


def distinct_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for small non-negative codes, by counting (zone
    and GPU-model indexes and their pairs: a bincount instead of a sort)."""
    if codes.size == 0 or int(codes.min()) < 0:
        uniq, inverse = np.unique(codes, return_inverse=True)
        return uniq, inverse.reshape(-1)
    uniq = np.flatnonzero(np.bincount(codes))
    lookup = np.zeros(int(uniq[-1]) + 1, dtype=np.intp)
    lookup[uniq] = np.arange(uniq.size, dtype=np.intp)
    return uniq, lookup[codes]


def _rows(column: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``column[idx]`` (a copy): ``take`` is the same and ten times faster for 2-D rows (not for
    a 2-D column without columns; a boolean mask is no index list for ``take``)."""
    idx = np.asarray(idx)
    if idx.dtype == np.bool_ or (column.ndim == 2 and column.shape[1] == 0):
        return column[idx]
    return column.take(idx, axis=0)


def _object_array(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
