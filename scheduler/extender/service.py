"""The extender's logic, bytes in and bytes out: filter, prioritize, bind, preempt.

No HTTP here (``scheduler.extender.routes`` wraps it) and no I/O on the filter/prioritize path: the
cluster state, the policy and the carbon snapshot are all in memory. Bind is the one verb that talks
to the Kubernetes API (through the binder) and records the decision
(:class:`~scheduler.extender.records.Decision`, kept from prioritize to bind) in the ledger: a bind
intent committed first (shared with concurrent binds), one Binding carrying the decision
annotations, then the placement row, not waited for (a crash before it lands is repaired from the
pod's annotation: :mod:`scheduler.extender.intents`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np
import structlog

from carbon.accounting.ledger import PlacementRecord
from carbon.clock import wall
from carbon.types import CarbonView
from scheduler import metrics, wire
from scheduler.cluster.state import ClusterState
from scheduler.demand import DemandError, PodDemand, parse_demand
from scheduler.engine import Engine
from scheduler.extender.crashpoint import CrashPoints
from scheduler.extender.inflight import InFlight
from scheduler.extender.preempt import accept_victims
from scheduler.extender.recheck import check_at_bind
from scheduler.extender.records import Decision, Seen, owner_of, placement_record
from scheduler.extender.shortlist import current, scored_hosts, shortlist_rows, weighs_every_node
from scheduler.names import ANN_DECISION, ANN_GPU_INDEX

log = structlog.get_logger("lowcarb.service")

NOT_SYNCED = (
    "lowcarb's node and pod cache has not synced with the API server yet; "
    "retry shortly (an ignorable extender is skipped meanwhile)"
)
UNKNOWN_NODE = "node not in lowcarb's cache (not synced yet, or deleted)"
_MEMO = 4096  # decisions kept until bind, at most this many pods ...
_MEMO_ROWS = 500_000  # ... and candidate rows in all (~200 B each: 100 MB at most)


class Binder(Protocol):
    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]
    ) -> str:
        """Create the Binding carrying the annotations; return '' on success, else the error."""
        ...


@dataclass(slots=True)
class _Call:
    """A filter/prioritize request decoded, before the cluster state is read."""

    args: wire.ExtenderArgs | wire.ExtenderArgsKeys
    result: wire.ExtenderFilterResult
    demand: PodDemand
    names: list[str]
    raws: list[wire.Raw] | None


class DecisionSink(Protocol):
    async def record_intent(self, record: PlacementRecord) -> bool: ...
    def forget_intent(self, uid: str) -> None: ...
    def record_decision(self, record: PlacementRecord) -> Future[bool]: ...


@dataclass
class Extender:
    """One extender instance: cluster state + the engine (policy, terms) + carbon snapshot."""

    state: ClusterState
    engine: Callable[[], Engine]
    carbon: Callable[[], CarbonView]
    binder: Binder | None = None
    ledger: DecisionSink | None = None
    clock: Callable[[], float] = wall
    synced: Callable[[], bool] = lambda: True
    #: How long a bind waits for its intent to be durable before binding anyway.
    intent_timeout_s: float = 0.5
    crash: CrashPoints = field(default_factory=CrashPoints)
    #: GPU pods between their scheduling cycle and their bind (a shared GPU's filter waits).
    inflight: InFlight = field(default_factory=InFlight)
    #: filter passes at most this many nodes, the cheapest (0: all feasible nodes; see
    #: :mod:`scheduler.extender.shortlist`)
    shortlist: int = 0
    _memo: OrderedDict[str, Decision] = field(default_factory=OrderedDict)
    # what filter learned of each pod (demand, class, owner, duration), for a bind that comes
    # without a prioritize: kube-scheduler skips prioritize when one node passes the filters
    _filtered: OrderedDict[str, Seen] = field(default_factory=OrderedDict)
    _memo_rows: int = 0

    def __post_init__(self) -> None:
        # a pod kube-scheduler binds by itself (no bindVerb) lands when the watch shows it bound
        self.state.on_bound = self.inflight.arrived

    # --- verbs ---------------------------------------------------------------------------------

    def filter(self, body: bytes) -> bytes:
        """Answer a filter from the cluster state as it is now (no wait: see ``filter_call``)."""
        call = self._filter_begin(body)
        return call if isinstance(call, bytes) else self._filter_end(call)

    def filter_call(self, body: bytes) -> bytes | Awaitable[bytes]:
        """The HTTP verb: ``filter``, after the binds of pods in flight that could take the GPU
        slots this pod would share (:mod:`scheduler.extender.inflight`); bytes when no wait."""
        call = self._filter_begin(body)
        if isinstance(call, bytes):
            return call
        wait = self.inflight.waits(call.demand, call.names)
        return self._filter_end(call) if wait is None else self._after(wait, self._filter_end, call)

    def prioritize(self, body: bytes) -> bytes:
        """Score the nodes from the cluster state as it is now (no wait: ``prioritize_call``)."""
        call = self._prioritize_begin(body)
        return call if isinstance(call, bytes) else self._prioritize_end(call)

    def prioritize_call(self, body: bytes) -> bytes | Awaitable[bytes]:
        """The HTTP verb: ``prioritize``, after the binds it must see (as ``filter_call``)."""
        call = self._prioritize_begin(body)
        if isinstance(call, bytes):
            return call
        wait = self.inflight.waits(call.demand, call.names)
        if wait is None:
            return self._prioritize_end(call)
        return self._after(wait, self._prioritize_end, call)

    @staticmethod
    async def _after(wait: Awaitable[None], then: Callable[[_Call], bytes], call: _Call) -> bytes:
        await wait
        return then(call)

    def _filter_begin(self, body: bytes) -> bytes | _Call:
        args = wire.decode_args(body)
        result = wire.ExtenderFilterResult()
        call = self._prepare(args, result)
        if call is None:
            return wire.encode(result)
        self.inflight.begin(call.demand.uid)
        return call

    def _filter_end(self, call: _Call) -> bytes:
        args, result, demand, names, raws = (
            call.args,
            call.result,
            call.demand,
            call.names,
            call.raws,
        )
        generation = self.state.generation  # read first: a change after it re-scores
        table, unknown = self.state.view_for(names)  # rows in the state's order
        metrics.NODES_PER_REQUEST.labels("filter").observe(len(table) + len(unknown))
        engine = self.engine()
        engine.observe(demand)
        klass = engine.classify(args.Pod) if args.Pod is not None else "default"
        # priced here too when a shortlist may be due: prioritize then answers from this
        short = 0 < self.shortlist < len(table) and not weighs_every_node(args.Pod)
        now = self.clock()
        ev = engine.evaluate(
            demand,
            table,
            self.carbon(),
            now,
            klass=klass,
            score=short,
            fleet_share=self.state.gpu_allocated_share() if short else None,
        )
        metrics.PODS_FILTERED.inc()
        duration = engine.expected_duration_s(demand, klass)
        owner = owner_of(args.Pod)
        if demand.uid:
            self._filtered[demand.uid] = Seen(demand, klass, owner, duration)
            self._filtered.move_to_end(demand.uid)
            while len(self._filtered) > _MEMO:
                self._filtered.popitem(last=False)
        all_names = table.name_array()
        failed = np.flatnonzero(~ev.feasible)
        if failed.size:
            get = ev.reasons.get
            result.FailedNodes = dict(
                zip(
                    all_names[failed].tolist(),
                    [get(i, "infeasible") for i in failed.tolist()],
                    strict=True,
                )
            )
        for name in unknown:
            result.FailedNodes[name] = UNKNOWN_NODE
        metrics.NODES_REJECTED.inc(len(result.FailedNodes))
        rows = shortlist_rows(ev, self.shortlist) if short else None
        if rows is None:
            passed = all_names[ev.feasible].tolist()
            old = self._memo.get(demand.uid) if demand.uid else None
            if old is not None and old.shortlist is not None:  # an earlier cycle's shortlist
                self._forget(demand.uid)
        else:
            passed = all_names[rows].tolist()
            metrics.NODES_LEFT_OFF.inc(int(ev.feasible.sum()) - len(passed))
            kept = dict(zip(passed, rows.tolist(), strict=True))
            decision = Decision(demand, klass, table.names, ev, table, now, owner, duration)
            decision.shortlist, decision.generation = kept, generation
            self._remember(decision)
        self.inflight.expect(demand, passed)
        if raws is not None:
            # echo the very bytes kube-scheduler sent, in its order (rows follow ``names``)
            keep = set(passed)
            result.Nodes = wire.RawNodeList(
                items=[raw for name, raw in zip(names, raws, strict=True) if name in keep],
                metadata={},
            )
        else:
            result.NodeNames = passed
        return wire.encode(result)

    def _prioritize_begin(self, body: bytes) -> bytes | _Call:
        # one pass that skips node objects kube-scheduler already sent at this resourceVersion;
        # only when one is new or changed is the body decoded again with the nodes kept whole
        try:
            keys = wire.decode_args_keys(body)
            nodes = keys.Nodes.items if keys.Nodes is not None else None
            fresh = nodes is None or all(
                self.state.has_node(k.metadata.name, k.metadata.resourceVersion) for k in nodes
            )
        except wire.WireError:  # maybe one bad node object: let the full decode judge it
            fresh = False
        args = keys if fresh else wire.decode_args(body)
        err = wire.ExtenderFilterResult()
        call = self._prepare(args, err)
        if call is None:
            # kube-scheduler cannot take an error body here; score nothing rather than fail
            return b"[]"
        return call

    def _prioritize_end(self, call: _Call) -> bytes:
        args, demand = call.args, call.demand
        shortlisted = self._memo.get(demand.uid) if demand.uid else None
        if shortlisted is not None and shortlisted.shortlist is not None:
            kept = shortlisted.shortlist
            if all(name in kept for name in call.names):
                return self._prioritize_shortlist(shortlisted, call.names)
        generation = self.state.generation  # read first: a change after it re-checks at bind
        table, unknown = self.state.table_for(call.names)
        metrics.NODES_PER_REQUEST.labels("prioritize").observe(len(table) + len(unknown))
        engine = self.engine()
        klass = engine.classify(args.Pod) if args.Pod is not None else "default"
        share = self.state.gpu_allocated_share()  # scarcity of the fleet, not the candidates
        ev = engine.evaluate(
            demand, table, self.carbon(), self.clock(), klass=klass, fleet_share=share
        )
        metrics.PODS_SCORED.inc()
        # kube-scheduler adds an extender's score to the hosts it lists and to no other
        # (prioritizeNodes in schedule_one.go): a 0 and no entry are the same, so the zeros (and
        # unknown names) are left out: at 5,000 nodes most of the list, which kube-scheduler's
        # serial cycle would decode and merge node by node
        hosts, levels = table.name_array(), ev.levels
        scored = levels > 0
        if not scored.all():
            hosts, levels = hosts[scored], levels[scored]
        duration = engine.expected_duration_s(demand, klass)
        owner = owner_of(args.Pod)
        decision = Decision(demand, klass, table.names, ev, table, self.clock(), owner, duration)
        decision.generation = generation
        self._remember(decision)
        self.inflight.expect(demand, table.names)
        return wire.encode_priorities(hosts, levels)

    def _prioritize_shortlist(self, decision: Decision, names: list[str]) -> bytes:
        """Score a shortlist from the filter's pricing (:func:`~scheduler.extender.shortlist.
        current`: priced again when a shortlisted node changed since)."""
        metrics.NODES_PER_REQUEST.labels("prioritize").observe(len(names))
        fresh = current(decision, names, self.state, self.engine(), self.carbon(), self.clock)
        if fresh is not decision:
            self._remember(fresh)
        metrics.PODS_SCORED.inc()
        self.inflight.expect(fresh.demand, names)
        return wire.encode_priorities(*scored_hosts(fresh, names))

    async def bind(self, body: bytes) -> bytes:
        args = wire.decode_binding(body)
        decision = self._memo.get(args.PodUID)
        if self.binder is None:
            metrics.PODS_BOUND.labels("no_cluster").inc()
            return wire.encode(
                wire.ExtenderBindingResult(
                    Error="lowcarb runs without a cluster connection; bindVerb needs "
                    "`lowcarb serve --kubeconfig FILE` or `--in-cluster`"
                )
            )
        annotations: dict[str, str] = {}
        gpu_index: tuple[int, ...] = ()
        record: PlacementRecord | None = None
        seen = self._filtered.get(args.PodUID)
        checked = check_at_bind(
            args.Node, decision, seen, self.state, self.engine(), self.carbon(), self.clock()
        )
        if checked is not None:
            decision, row, gpu_index, late = checked
            record = placement_record(decision, row, self.clock())
            if late:
                record = msgspec.structs.replace(record, note=_join(record.note, late))
            annotations[ANN_DECISION] = record.to_annotation()
            if gpu_index:
                annotations[ANN_GPU_INDEX] = ",".join(map(str, gpu_index))
            self.state.assume(decision.demand, args.Node, gpu_index)
        self.inflight.arrived(args.PodUID)  # counted now: filters waiting for it go on
        if record is not None and self.ledger is not None:
            await self._intend(record)
        self.crash.reach("before-binding")
        error = await self.binder.bind(
            args.PodNamespace, args.PodName, args.PodUID, args.Node, annotations
        )
        if error:
            self.state.forget(args.PodUID)
            if record is not None and self.ledger is not None:
                self.ledger.forget_intent(record.uid)
            metrics.PODS_BOUND.labels("error").inc()
        else:
            self.crash.reach("after-binding")
            metrics.PODS_BOUND.labels("ok").inc()
            self._filtered.pop(args.PodUID, None)
            self._forget(args.PodUID)
            if record is not None and self.ledger is not None:
                await self._record(record)
        return wire.encode(wire.ExtenderBindingResult(Error=error))

    async def _intend(self, record: PlacementRecord) -> None:
        """Wait (bounded) for the bind intent to be durable; a ledger fault never fails a bind."""
        assert self.ledger is not None
        try:
            await asyncio.wait_for(self.ledger.record_intent(record), self.intent_timeout_s)
        except Exception as exc:
            metrics.ERRORS.labels("ledger").inc()
            log.error(
                "ledger intent not durable; binding anyway (the pod watch repairs a lost row)",
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _record(self, record: PlacementRecord) -> None:
        """Append the placement row; its commit is not waited for (the intent covers a crash)."""
        assert self.ledger is not None
        try:
            future = self.ledger.record_decision(record)
        except Exception as exc:
            _ledger_failed(exc)
            return
        future.add_done_callback(_log_failure)
        if self.crash.wants("after-commit"):
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)
        self.crash.reach("after-commit")

    def preempt(self, body: bytes) -> bytes:
        """Accept kube-scheduler's victims as proposed (lowcarb adds no preemption policy)."""
        return accept_victims(body)

    # --- helpers -------------------------------------------------------------------------------

    def _prepare(
        self,
        args: wire.ExtenderArgs | wire.ExtenderArgsKeys,
        result: wire.ExtenderFilterResult,
    ) -> _Call | None:
        if args.Pod is None:
            result.Error = "ExtenderArgs.Pod is missing: kube-scheduler always sends the pod"
            metrics.ERRORS.labels("missing_pod").inc()
            return None
        if not self.synced():
            # without the pods on each node lowcarb would see every GPU free and double-book;
            # an Error lets an ignorable extender be skipped for this pod instead
            result.Error = NOT_SYNCED
            metrics.ERRORS.labels("not_synced").inc()
            return None
        try:
            demand = parse_demand(args.Pod)
        except DemandError as exc:
            result.Error = str(exc)
            metrics.ERRORS.labels("bad_pod").inc()
            return None
        raws: list[wire.Raw] | None = None
        if isinstance(args, wire.ExtenderArgsKeys) and args.Nodes is not None:
            names = [k.metadata.name for k in args.Nodes.items or ()]  # all cached (prioritize)
        elif isinstance(args, wire.ExtenderArgs) and args.Nodes is not None:
            raws, names = self._ingest(args.Nodes.items or [], result)
        elif args.NodeNames is not None:
            names = args.NodeNames
        else:
            result.Error = (
                "ExtenderArgs has neither Nodes nor NodeNames: set nodeCacheCapable in the "
                "extender config to match how lowcarb runs"
            )
            metrics.ERRORS.labels("no_nodes").inc()
            return None
        return _Call(args, result, demand, names, raws)

    def _ingest(
        self, items: list[wire.Raw], result: wire.ExtenderFilterResult
    ) -> tuple[list[wire.Raw], list[str]]:
        """Feed the request's node objects to the cache; a node already held at the same
        resourceVersion costs only a name+version decode (the rest of its JSON is skipped)."""
        raws: list[wire.Raw] = []
        names: list[str] = []
        has_node = self.state.has_node
        for raw in items:
            try:
                key = wire.node_key(raw)
                if not has_node(key.name, key.resourceVersion):
                    self.state.upsert_node(wire.decode_node(raw))
            except wire.WireError as exc:
                name = wire.node_name(raw)
                if name:  # never drop a node silently: fail it with the reason
                    result.FailedNodes[name] = str(exc)
                metrics.ERRORS.labels("bad_node").inc()
                continue
            raws.append(raw)
            names.append(key.name)
        return raws, names

    def _remember(self, decision: Decision) -> None:
        uid = decision.demand.uid
        if not uid:
            return
        self._forget(uid)
        self._memo[uid] = decision
        self._memo_rows += len(decision.names)
        while len(self._memo) > _MEMO or (self._memo_rows > _MEMO_ROWS and len(self._memo) > 1):
            _, dropped = self._memo.popitem(last=False)
            self._memo_rows -= len(dropped.names)

    def _forget(self, uid: str) -> None:
        """Drop the pod's decision, if any (its rows leave the memo's count)."""
        old = self._memo.pop(uid, None)
        if old is not None:
            self._memo_rows -= len(old.names)


def _ledger_failed(exc: BaseException) -> None:
    metrics.ERRORS.labels("ledger").inc()
    log.error("ledger write failed; decision kept on the pod annotation", error=str(exc))


def _log_failure(future: Future[bool]) -> None:
    """Done callback of a placement append (runs on the ledger's writer thread)."""
    if not future.cancelled() and future.exception() is not None:
        _ledger_failed(future.exception())  # type: ignore[arg-type]


def _join(note: str | None, extra: str) -> str:
    return f"{note}; {extra}" if note else extra
