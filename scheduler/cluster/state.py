"""Cluster state: the known nodes and the pods counted against them, kept as one node table.

:class:`ClusterState` is fed by the Kubernetes watch (cluster mode), by the nodes that arrive in
requests (``nodeCacheCapable: false``), and by pods this service just bound but has not yet seen
bound ("assumed", expiring), so back-to-back pods never double-book GPUs. It keeps one
:class:`scheduler.cluster.table.NodeTable` over all known nodes; a scheduling cycle takes the
rows of its candidate nodes (``table_for``; a filter's, in the state's order: ``view_for``) and
never parses a node twice: node rows are rebuilt only when a node changes, and usage rows are
recomputed only for the nodes whose pods changed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from scheduler import wire
from scheduler.cluster.table import NodeTable, RowOrigin
from scheduler.cluster.views import CandidateViews, fingerprint, rows_of
from scheduler.demand import DemandError, PodDemand, parse_demand
from scheduler.gpu import supply as gpu

REGION_LABEL = "topology.kubernetes.io/region"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
ASSUME_TTL_S = 60.0
_ROWS_MEMO = 8  # distinct candidate lists remembered (one per node set kube-scheduler sends)
_EPOCHS = itertools.count(1)  # one per table built, unique across states (RowOrigin.epoch)
_VERSIONS = itertools.count(1)  # row versions (RowOrigin.versions), bumped at every fill of a row

ZoneOf = Callable[[Mapping[str, str]], str | None]


def region_zone(labels: Mapping[str, str]) -> str | None:
    """Default zone mapping: the region label itself (the policy's zone mapper replaces it)."""
    return labels.get(REGION_LABEL)


@dataclass(slots=True)
class NodeInfo:
    """What a node offers, parsed once per node resourceVersion."""

    name: str
    resource_version: str
    labels: dict[str, str]
    region: str
    cpu_milli: int
    mem_bytes: int
    supply: gpu.GpuSupply


@dataclass(slots=True)
class PodUsage:
    """A pod counted against a node: bound (from the watch) or assumed (just bound by us)."""

    uid: str
    node: str
    demand: PodDemand
    gpu_index: tuple[int, ...] = ()
    assumed_until: float | None = None


def _counts_the_same(a: PodUsage, b: PodUsage) -> bool:
    """Both count the same resources on the same node (the same GPU slots)."""
    da, db = a.demand, b.demand
    return (
        a.node == b.node
        and a.gpu_index == b.gpu_index
        and (da.gpus, da.gpu_milli, da.mig, da.cpu_milli, da.mem_bytes)
        == (db.gpus, db.gpu_milli, db.mig, db.cpu_milli, db.mem_bytes)
    )


def parse_node(node: wire.Node) -> NodeInfo:
    """Parse what lowcarb needs from a Node object."""
    from scheduler.quantity import QuantityError, int_value, milli_value

    labels = node.metadata.labels or {}
    alloc = node.status.allocatable or node.status.capacity or {}
    try:
        cpu = milli_value(alloc.get("cpu", "0"))
        mem = int_value(alloc.get("memory", "0"))
    except QuantityError:
        cpu, mem = 0, 0
    return NodeInfo(
        name=node.metadata.name,
        resource_version=node.metadata.resourceVersion,
        labels=labels,
        region=labels.get(REGION_LABEL, ""),
        cpu_milli=cpu,
        mem_bytes=mem,
        supply=gpu.node_gpu_supply(node),
    )


@dataclass
class ClusterState:
    """Nodes and the pods counted against them; thread-safe, cheap to read per request."""

    zone_of: ZoneOf = region_zone
    clock: Callable[[], float] = time.monotonic
    assume_ttl_s: float = ASSUME_TTL_S
    synced: bool = False
    _nodes: dict[str, NodeInfo] = field(default_factory=dict)
    _pods: dict[str, PodUsage] = field(default_factory=dict)
    _pods_by_node: dict[str, set[str]] = field(default_factory=dict)
    _table: NodeTable | None = None
    _index: dict[str, int] = field(default_factory=dict)
    _dirty_nodes: set[str] = field(default_factory=set)
    _assumed: dict[str, float] = field(default_factory=dict)  # uid -> expiry (clock seconds)
    # candidate list -> (its rows, names not known, an earlier take of those rows)
    _rows_memo: dict[tuple[str, ...], tuple[np.ndarray, list[str], NodeTable]] = field(
        default_factory=dict
    )
    _views: CandidateViews = field(default_factory=CandidateViews)  # the filter's last view
    _lock: threading.RLock = field(default_factory=threading.RLock)
    #: bumped on every change a score could read (pods counted, nodes added, changed, gone):
    #: an answer computed at one generation still holds while it is unchanged
    generation: int = 0
    # the generation each node's usage or row last changed at, and the node set's last change
    _node_gen: dict[str, int] = field(default_factory=dict)
    _layout_gen: int = 0
    _share: tuple[int, float] = (-1, 0.0)  # gpu_allocated_share at a generation
    #: called with the uid of each pod the watch reports bound (the extender's in-flight pods)
    on_bound: Callable[[str], None] | None = None

    # --- feeding -----------------------------------------------------------------------------

    def has_node(self, name: str, resource_version: str) -> bool:
        """True when ``name`` is held at exactly this (non-empty) resourceVersion."""
        info = self._nodes.get(name)
        return (
            info is not None
            and bool(resource_version)
            and info.resource_version == resource_version
        )

    def upsert_node(self, node: wire.Node) -> None:
        name = node.metadata.name
        if not name:
            return
        with self._lock:
            old = self._nodes.get(name)
            rv = node.metadata.resourceVersion
            if old is not None and rv and old.resource_version == rv:
                return
            info = self._nodes[name] = parse_node(node)
            if old is None or not self._patch_row(info):
                self._invalidate()

    def delete_node(self, name: str) -> None:
        with self._lock:
            if self._nodes.pop(name, None) is not None:
                self._invalidate()

    def upsert_pod(self, pod: wire.Pod) -> None:
        """Count a pod against its node while it is bound and not terminal; forget it otherwise."""
        uid = pod.metadata.uid
        if not uid:
            return
        node = pod.spec.nodeName
        if not node or pod.status.phase in TERMINAL_PHASES:
            self.delete_pod(uid)
            return
        try:
            demand = parse_demand(pod)
        except DemandError:
            # kube-scheduler already admitted it; count nothing we cannot parse rather than crash
            self.delete_pod(uid)
            return
        index = gpu.gpu_index_of(pod)
        with self._lock:
            usage = PodUsage(uid=uid, node=node, demand=demand, gpu_index=index)
            old = self._pods.get(uid)
            if old is not None and _counts_the_same(old, usage):
                # the watch confirming a pod we assumed, or a status change: nothing a score
                # reads changed (no generation bump, so prioritize keeps the filter's pricing)
                self._pods[uid] = usage
                self._assumed.pop(uid, None)
            else:
                self._remove(uid)
                self._add(usage)
        if self.on_bound is not None:
            self.on_bound(uid)

    def delete_pod(self, uid: str) -> None:
        with self._lock:
            self._remove(uid)

    def assume(self, demand: PodDemand, node: str, gpu_index: tuple[int, ...] = ()) -> None:
        """Count a pod we just bound until the watch shows it bound (or the TTL passes)."""
        with self._lock:
            existing = self._pods.get(demand.uid)
            if existing is not None and existing.assumed_until is None:
                return  # the watch already reported it bound
            self._remove(demand.uid)
            until = self.clock() + self.assume_ttl_s
            self._add(PodUsage(demand.uid, node, demand, gpu_index, assumed_until=until))

    def forget(self, uid: str) -> None:
        """Drop an assumed pod (its binding failed)."""
        with self._lock:
            usage = self._pods.get(uid)
            if usage is not None and usage.assumed_until is not None:
                self._remove(uid)

    def replace_all(
        self, nodes: Iterable[wire.Node] | None, pods: Iterable[wire.Pod] | None
    ) -> None:
        """Reset to a fresh list (after a relist); assumed pods survive until they expire."""
        with self._lock:
            if nodes is not None:
                self._nodes = {}
                for node in nodes:
                    self.upsert_node(node)
                self._invalidate()
            if pods is not None:
                assumed = [self._pods[uid] for uid in self._assumed]
                self._pods, self._pods_by_node, self._assumed = {}, {}, {}
                for pod in pods:
                    self.upsert_pod(pod)
                for usage in assumed:
                    if usage.uid not in self._pods:
                        self._add(usage)
                self._dirty_nodes.update(self._nodes)

    def mark_synced(self) -> None:
        self.synced = True

    def set_zone_of(self, zone_of: ZoneOf) -> None:
        """Change the node-labels -> grid-zone mapping (policy reload); rows are rebuilt."""
        with self._lock:
            self.zone_of = zone_of
            self._invalidate()

    # --- reading -----------------------------------------------------------------------------

    def node_names(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def pods_on(self, node: str) -> list[PodUsage]:
        with self._lock:
            return [self._pods[u] for u in self._pods_by_node.get(node, ())]

    def pod(self, uid: str) -> PodUsage | None:
        with self._lock:
            return self._pods.get(uid)

    def table_for(self, names: Iterable[str]) -> tuple[NodeTable, list[str]]:
        """Rows for ``names`` in that order, and the names this state does not know.

        The name -> row lookup is memoised per list (until the node set changes): prioritize
        gets the filter's shortlist again. The usage columns are always current.
        """
        key = tuple(names)
        with self._lock:
            self._expire()
            table = self._current_table()
            hit = self._rows_memo.get(key)
            if hit is None:
                rows, unknown = rows_of(self._index, key)
                if len(self._rows_memo) >= _ROWS_MEMO:
                    self._rows_memo.pop(next(iter(self._rows_memo)))
                taken = table.take(rows)
                self._rows_memo[key] = (rows, unknown, taken)
                return taken, list(unknown)
            rows, unknown, like = hit
            return table.take(rows, like), list(unknown)

    def view_for(self, names: list[str]) -> tuple[NodeTable, list[str]]:
        """Like ``table_for``, but the rows in the state's order, the same view for the same set
        of names cycle after cycle, re-read only where rows changed (:mod:`.views`): for a
        filter, whose candidates come in a new order every cycle."""
        key = fingerprint(names)  # outside the lock: only the names are read
        with self._lock:
            self._expire()
            table = self._current_table()  # first: it may build a new index
            rows, unknown = self._views.rows(self._index, names, key)
            return self._views.view(table, rows), unknown

    def table_for_node(self, name: str) -> NodeTable | None:
        """The one row of ``name`` (None when unknown), leaving the per-list memo of
        ``table_for`` alone: a bind looks up one node per pod, and memoising those would push
        the candidate list of every cycle out of the memo (a 5,000-node row rebuild)."""
        with self._lock:
            self._expire()
            table = self._current_table()
            i = self._index.get(name)
            if i is None:
                return None
            return table.take(np.array([i], dtype=np.intp))

    def changed_since(self, generation: int, names: Iterable[str]) -> bool:
        """True when the node set, or any of ``names``' rows or the pods counted on them, changed
        after ``generation`` (a score computed then for those nodes may no longer hold)."""
        with self._lock:
            if self._layout_gen > generation:
                return True
            get = self._node_gen.get
            return any(get(name, 0) > generation for name in names)

    def gpu_allocated_share(self) -> float:
        """Allocated share of every known node's GPUs, 0..1 (0 without GPUs): the fleet-wide
        scarcity the priced model reads, not just the candidates kube-scheduler sends."""
        with self._lock:
            self._expire()
            table = self._current_table()
            if self._share[0] != self.generation:  # one sum over the fleet per change
                self._share = (self.generation, table.allocated_gpu_share())
            return self._share[1]

    def full_table(self) -> NodeTable:
        with self._lock:
            self._expire()
            table = self._current_table()
            return table.take(np.arange(len(table), dtype=np.intp))

    # --- internals ---------------------------------------------------------------------------

    def _invalidate(self) -> None:
        """The node set changed: rebuild the table (and forget row lookups) on next read."""
        self.generation += 1
        self._layout_gen = self.generation  # covers every node: their own marks can go
        self._node_gen.clear()
        self._table = None
        self._rows_memo.clear()

    def _touch(self, node: str) -> None:
        """``node``'s usage or row changed: a new generation, marked on the node."""
        self.generation += 1
        self._node_gen[node] = self.generation

    def _add(self, usage: PodUsage) -> None:
        self._touch(usage.node)
        self._pods[usage.uid] = usage
        if usage.assumed_until is not None:
            self._assumed[usage.uid] = usage.assumed_until
        self._pods_by_node.setdefault(usage.node, set()).add(usage.uid)
        self._dirty_nodes.add(usage.node)

    def _remove(self, uid: str) -> None:
        usage = self._pods.pop(uid, None)
        self._assumed.pop(uid, None)
        if usage is not None:
            self._touch(usage.node)
            on_node = self._pods_by_node.get(usage.node)
            if on_node is not None:
                on_node.discard(uid)
            self._dirty_nodes.add(usage.node)

    def _expire(self) -> None:
        if not self._assumed:
            return
        now = self.clock()
        expired = [uid for uid, until in self._assumed.items() if until < now]
        for uid in expired:
            self._remove(uid)

    def _current_table(self) -> NodeTable:
        if self._table is None:
            self._rows_memo.clear()
            self._table = self._build_static()
            self._dirty_nodes = set(self._nodes)
        if self._dirty_nodes:
            table = self._table
            for name in self._dirty_nodes:
                i = self._index.get(name)
                if i is not None:
                    self._fill_usage(table, i, self._nodes[name])
            self._dirty_nodes.clear()
        return self._table

    def _patch_row(self, info: NodeInfo) -> bool:
        """Rewrite a known node's row in place (nodes change often: status, heartbeats, labels);
        False when the table must be rebuilt (a new zone, GPU model or MIG profile, more GPUs
        than the table is wide). Readers hold copies (``take``), so this never races them."""
        table, i = self._table, self._index.get(info.name)
        if table is None or i is None:
            return False
        supply = info.supply
        zone = self.zone_of(info.labels)
        if (zone is not None and zone not in table.zones) or supply.product not in table.models:
            return False
        if supply.count > table.gpu_free.shape[1] or not set(supply.mig) <= set(table.mig_profiles):
            return False
        table.zone[i] = -1 if zone is None else table.zones.index(zone)
        table.gpu_model[i] = table.models.index(supply.product)
        table.gpu_total[i] = supply.count
        table.gpu_mem_mib[i] = supply.memory_mib
        if table.region[i] != info.region:
            table.region[i] = info.region
            if table.region_obj is not None:
                table.region_obj[i] = info.region
            self._rows_memo.clear()  # memoised takes carry regions
        self._dirty_nodes.add(info.name)  # free GPUs, CPU and memory from the new allocatable
        self._touch(info.name)
        return True

    def _build_static(self) -> NodeTable:
        infos = list(self._nodes.values())
        n = len(infos)
        self._index = {info.name: i for i, info in enumerate(infos)}
        zones: dict[str, int] = {}
        models: dict[str, int] = {}
        profiles: dict[str, int] = {}
        zone = np.full(n, -1, dtype=np.int32)
        model = np.zeros(n, dtype=np.int32)
        for i, info in enumerate(infos):
            z = self.zone_of(info.labels)
            if z is not None:
                zone[i] = zones.setdefault(z, len(zones))
            model[i] = models.setdefault(info.supply.product, len(models))
            for p in info.supply.mig:
                profiles.setdefault(p, len(profiles))
        width = max([gpu.MIN_SLOTS, *(info.supply.count for info in infos)])
        return NodeTable(
            names=[info.name for info in infos],
            zone=zone,
            zones=list(zones),
            region=[info.region for info in infos],
            gpu_model=model,
            models=list(models),
            gpu_total=np.array([info.supply.count for info in infos], dtype=np.int32),
            gpu_free=np.zeros((n, width), dtype=np.int32),
            gpu_mem_mib=np.array([info.supply.memory_mib for info in infos], dtype=np.int32),
            cpu_free=np.zeros(n, dtype=np.int64),
            mem_free=np.zeros(n, dtype=np.int64),
            mig_free=np.zeros((n, len(profiles)), dtype=np.int32),
            mig_profiles=list(profiles),
            origin=RowOrigin(next(_EPOCHS), n, np.arange(n), np.zeros(n, dtype=np.int64)),
        )

    def _fill_usage(self, table: NodeTable, i: int, info: NodeInfo) -> None:
        if table.origin is not None:  # the row's content changes: results keyed by it expire
            table.origin.versions[i] = next(_VERSIONS)
        pods = [self._pods[u] for u in self._pods_by_node.get(info.name, ())]
        cpu = info.cpu_milli - sum(p.demand.cpu_milli for p in pods)
        mem = info.mem_bytes - sum(p.demand.mem_bytes for p in pods)
        table.cpu_free[i] = cpu
        table.mem_free[i] = mem
        free = gpu.free_slots(info.supply, [(p.demand, p.gpu_index) for p in pods])
        table.gpu_free[i, :] = 0
        table.gpu_free[i, : len(free)] = free
        mig_left = dict(info.supply.mig)
        for p in pods:
            for profile, count in p.demand.mig.items():
                mig_left[profile] = mig_left.get(profile, 0) - count
        for j, profile in enumerate(table.mig_profiles):
            table.mig_free[i, j] = mig_left.get(profile, 0)
