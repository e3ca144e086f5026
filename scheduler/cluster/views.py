"""Candidate views: a filter's candidate rows in the cluster state's order, reused cycle to cycle.

kube-scheduler sends the same candidates cycle after cycle (with ``percentageOfNodesToScore:
100``, every node its own filters pass), but in a new order each time: its filter runs in
parallel and lists nodes as they pass. Taking the rows in the request's order copies every
column through a fancy index for every pod; a view takes them in the state's order instead
(sorted rows), so the next cycle with the same candidate *set* gets the same view back with only
the rows whose version moved re-read (in a scheduling burst, the node the previous pod went to):
the columns those rows change are copied whole (contiguous, several times cheaper than a gather),
the rest shared. Terms see a table exactly like a ``take`` of those rows
(:meth:`scheduler.cluster.table.NodeTable.take`), with the same
:class:`~scheduler.cluster.table.RowOrigin`, so what they remember per row keeps working.

The names' rows are found the same way: a set seen last cycle is recognised by an order-free
fingerprint (:func:`fingerprint`: the count and the wrapped sum of the names' hashes, computed
from the freshly decoded strings alone), so the 5,000 dict probes of :func:`rows_of` (each a
cache miss on a stored key, beside a busy control plane) run only when the set changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat

import numpy as np

from scheduler.cluster.table import NodeTable, RowOrigin

#: usage and node columns re-read for a row whose version moved (names never change in a view:
#: a new node set is a new table epoch)
_COLUMNS = (
    "zone",
    "gpu_model",
    "gpu_total",
    "gpu_free",
    "gpu_mem_mib",
    "cpu_free",
    "mem_free",
    "mig_free",
)


def rows_of(index: Mapping[str, int], names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Rows of the known ``names`` in ``index`` (in their order) and the names not known."""
    rows = np.fromiter(map(index.get, names, repeat(-1)), dtype=np.intp, count=len(names))
    unknown = [names[i] for i in np.flatnonzero(rows < 0).tolist()]
    return (rows[rows >= 0] if unknown else rows), unknown


def fingerprint(names: Sequence[str]) -> tuple[int, int]:
    """The set of ``names`` (names are unique), whatever their order: their count and the sum of
    their hashes modulo 2**64. Two different sets agree by chance with odds near 2**-64 per
    comparison (str hashes are salted per process, so nobody can aim at a collision)."""
    hashes = np.fromiter(map(hash, names), dtype=np.int64, count=len(names))
    return len(names), int(hashes.view(np.uint64).sum(dtype=np.uint64))


def candidate_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """``rows`` (indexes into a table of ``size`` rows) as a sorted set: the state's order."""
    seen = np.zeros(size, dtype=bool)
    seen[rows] = True
    return np.flatnonzero(seen)


def refreshed(base: NodeTable, last: NodeTable) -> NodeTable | None:
    """``last`` (a view of some rows of ``base``) copied, with each row whose version in
    ``base`` moved since re-read from ``base``; None when ``last`` is not a view of ``base``'s
    current epoch (take afresh)."""
    origin, mine = base.origin, last.origin
    if origin is None or mine is None or mine.epoch != origin.epoch or mine.size != len(base):
        return None
    versions = origin.versions[mine.rows]
    stale = np.flatnonzero(versions != mine.versions)
    source = mine.rows[stale]
    # a column is copied only where a stale row's values moved (copy on write: ``last`` may be
    # held by a decision); the others, and the lists, are shared (no view is ever changed)
    columns: dict[str, np.ndarray] = {}
    for name in _COLUMNS:
        column = getattr(last, name)
        if stale.size:
            fresh = getattr(base, name)[source]
            if not np.array_equal(column[stale], fresh):
                column = column.copy()
                column[stale] = fresh
        columns[name] = column
    region, region_obj = last.region, last.region_obj
    moved = [(int(k), base.region[int(r)]) for k, r in zip(stale, source, strict=True)]
    if any(region[k] != value for k, value in moved):
        region, region_obj = list(region), None  # the array is rebuilt on first read
        for k, value in moved:
            region[k] = value
    return NodeTable(
        names=last.names,
        zones=base.zones,
        region=region,
        models=base.models,
        mig_profiles=base.mig_profiles,
        names_obj=last.names_obj,
        region_obj=region_obj,
        order_obj=last.order_obj,
        origin=RowOrigin(mine.epoch, mine.size, mine.rows, versions),
        **columns,
    )


class CandidateViews:
    """The last view handed out, to be refreshed when the next cycle asks for the same rows.

    Not thread-safe on its own: :class:`scheduler.cluster.state.ClusterState` calls it under
    its lock."""

    __slots__ = ("_found", "_last")

    def __init__(self) -> None:
        self._last: NodeTable | None = None
        # the last set's rows: (the index they were found in, fingerprint, rows, unknown names)
        self._found: tuple[Mapping[str, int], tuple[int, int], np.ndarray, list[str]] | None = None

    def rows(
        self, index: Mapping[str, int], names: Sequence[str], key: tuple[int, int]
    ) -> tuple[np.ndarray, list[str]]:
        """:func:`rows_of` ``names`` in ``index``, looked up again only when ``key`` (their
        :func:`fingerprint`) or the index (a new node set) differs from the last call's."""
        found = self._found
        if found is not None and found[0] is index and found[1] == key:
            return found[2], list(found[3])
        rows, unknown = rows_of(index, names)
        self._found = (index, key, rows, unknown)
        return rows, list(unknown)

    def view(self, base: NodeTable, rows: np.ndarray) -> NodeTable:
        """The rows ``rows`` of ``base`` (any order, no duplicates needed) in ``base``'s order."""
        wanted = candidate_rows(rows, len(base))
        last = self._last
        view = None
        if (
            last is not None
            and last.origin is not None
            and np.array_equal(last.origin.rows, wanted)
        ):
            view = refreshed(base, last)
        if view is None:
            view = base.take(wanted)
        self._last = view
        return view
