"""Scheduling decisions and pod lifecycles as ledger records (the scheduler side of the ledger).

Prioritize keeps a :class:`Decision` per pod until bind; a bind turns it into a
:class:`carbon.accounting.ledger.PlacementRecord` (also carried to the pod by the Binding as the
``lowcarb.dev/decision`` annotation), preceded by a bind intent; the pod watch turns phase
changes into idempotent :class:`carbon.accounting.ledger.LifecycleRecord` s (``uid:start``,
``uid:end``), so a restart that relists every pod writes no duplicates, and repairs a bound pod
whose placement row a crash lost (:mod:`scheduler.extender.intents`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import structlog

from carbon.accounting.ledger import (
    IntentRecord,
    Ledger,
    LifecycleRecord,
    PlacementRecord,
    Record,
)
from carbon.clock import wall
from scheduler import metrics, wire
from scheduler.cluster.state import NodeTable
from scheduler.demand import PodDemand
from scheduler.extender.intents import GroupCommit, SettleStats, recovered_placement, settle_intents
from scheduler.names import ANN_DECISION
from scheduler.scoring import Evaluation

log = structlog.get_logger("lowcarb.records")


@dataclass(slots=True)
class Decision:
    """What prioritize decided for a pod, kept until bind (for assume, annotation and ledger)."""

    demand: PodDemand
    klass: str
    names: list[str]
    evaluation: Evaluation
    table: NodeTable
    at: float
    owner: tuple[str | None, str | None] = (None, None)
    duration_s: float | None = None
    #: made at filter with a shortlist: the shortlisted names -> their rows, and the cluster
    #: state's generation it was scored at (prioritize answers from it while that holds)
    shortlist: dict[str, int] | None = None
    generation: int = -1

    def row(self, node: str) -> int | None:
        if self.shortlist is not None:  # bind's node is one of them (a dict, not a list search)
            row = self.shortlist.get(node)
            if row is not None:
                return row if row >= 0 else None  # -1: shortlisted, deleted since
        try:
            return self.names.index(node)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Seen:
    """What filter learned of a pod: enough to decide again at bind without a prioritize."""

    demand: PodDemand
    klass: str
    owner: tuple[str | None, str | None]
    duration_s: float | None


def owner_of(pod: wire.Pod | None) -> tuple[str | None, str | None]:
    """The controlling owner (kind, name) of a pod, e.g. ("Job", "train-42")."""
    refs = (pod.metadata.ownerReferences or []) if pod is not None else []
    for ref in refs:
        if ref.controller:
            return ref.kind, ref.name
    return (refs[0].kind, refs[0].name) if refs else (None, None)


def placement_record(decision: Decision, row: int, at: float) -> PlacementRecord:
    ev, t, demand = decision.evaluation, decision.table, decision.demand
    zone_idx = int(t.zone[row])
    zone = t.zones[zone_idx] if zone_idx >= 0 else None
    scores = {
        name: float(ts.normalized[row])
        for name, ts in ev.terms.items()
        if np.isfinite(ts.normalized[row])
    }
    intensity = source = age = None
    expected_kg = counterfactual_kg = counterfactual_i = None
    carbon = ev.terms.get("carbon")
    if carbon is not None:
        info = carbon.carbon_data.get(zone) if zone is not None else None
        if info is not None:
            intensity, source, age = info.g_per_kwh, info.source, info.age_s
        feasible = ev.feasible & np.isfinite(carbon.raw)
        if np.isfinite(carbon.raw[row]):
            expected_kg = float(carbon.raw[row]) / 1000.0
        if feasible.any():
            counterfactual_kg = float(np.mean(carbon.raw[feasible])) / 1000.0
            per_row = carbon.detail.get("intensity")
            if per_row is not None:
                vals = per_row[feasible]
                vals = vals[np.isfinite(vals)]
                counterfactual_i = float(vals.mean()) if vals.size else None
    return PlacementRecord(
        uid=demand.uid,
        namespace=demand.namespace,
        name=demand.name,
        at=at,
        node=t.names[row],
        zone=zone,
        region=t.region[row] or None,
        workload_class=decision.klass,
        owner_kind=decision.owner[0],
        owner_name=decision.owner[1],
        gpu_model=(t.models[int(t.gpu_model[row])] or None) if t.models else None,
        gpus=demand.gpus,
        gpu_milli=demand.gpu_milli if demand.gpus else 0,
        cpu_milli=demand.cpu_milli,
        memory_bytes=demand.mem_bytes,
        intensity_g_per_kwh=intensity,
        intensity_source=source,
        intensity_age_s=age,
        scores=scores,
        score=int(ev.levels[row]),
        counterfactual_g_per_kwh=counterfactual_i,
        counterfactual_kg=counterfactual_kg,
        expected_kg=expected_kg,
        expected_duration_s=decision.duration_s,
        candidates=int(ev.feasible.sum()),
        note="; ".join(ev.notes) or None,
    )


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LedgerSink:
    """The service's handle on the ledger: intents and decisions at bind, lifecycle and repairs
    from the pod watch, intent settlement at start."""

    def __init__(
        self, ledger: Ledger, clock: Callable[[], float] = wall, *, group_wait_s: float = 0.01
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.intents = GroupCommit(ledger, max_wait_s=group_wait_s)
        self._running: set[str] = set()
        self._ours: set[str] = set()  # pods this process is binding or bound: their row is its own
        self._checked: set[str] = set()  # pods with a decision already reconciled by this process

    @classmethod
    def open(cls, path: Path | str) -> LedgerSink:
        return cls(Ledger(path))

    async def record_intent(self, record: PlacementRecord) -> bool:
        """Commit the intent to bind ``record``'s pod (group commit); True when durable and new."""
        self._ours.add(record.uid)
        intent = IntentRecord(
            uid=record.uid,
            namespace=record.namespace,
            name=record.name,
            node=record.node,
            at=record.at,
        )
        return await self.intents.append(intent)

    def forget_intent(self, uid: str) -> None:
        """The Binding failed: a later sighting of the pod bound with a decision gets a row."""
        self._ours.discard(uid)
        self._checked.discard(uid)

    def record_decision(self, record: PlacementRecord) -> Future[bool]:
        """Append the placement row on the next group commit; the future says when it is in."""
        self._ours.add(record.uid)
        return self.intents.defer(record)

    async def settle(self, get_pod: Callable[[str, str], Awaitable[wire.Pod]]) -> SettleStats:
        """Settle the intents a previous process left open (see :func:`settle_intents`)."""
        try:
            return await settle_intents(
                self.ledger, get_pod, skip=self._ours.__contains__, clock=self.clock
            )
        except Exception as exc:  # the ledger file went bad: the pod watch still repairs rows
            metrics.ERRORS.labels("ledger").inc()
            log.error("settling bind intents failed", error=f"{type(exc).__name__}: {exc}")
            return SettleStats()

    def observe_pod(self, pod: wire.Pod) -> None:
        """Write the start of running for a bound pod seen Running (idempotent by key), and the
        placement row of a pod bound with lowcarb's decision that has none (first sighting)."""
        uid = pod.metadata.uid
        if not uid or not pod.spec.nodeName:
            return
        if uid not in self._checked and uid not in self._ours:
            self._checked.add(uid)
            if ANN_DECISION in (pod.metadata.annotations or {}):
                self._recover(pod)
        phase = pod.status.phase
        if phase == "Running" and uid not in self._running:
            self._running.add(uid)
            at = _epoch(pod.status.startTime) or self.clock()
            self._append(LifecycleRecord(uid=uid, event="start", at=at))
        elif phase in ("Succeeded", "Failed"):
            self.pod_gone(uid, phase)

    def pod_gone(self, uid: str, why: str = "deleted") -> None:
        """A running pod finished or left the watch: write the end of running."""
        self._ours.discard(uid)
        self._checked.discard(uid)
        if uid in self._running:
            self._running.discard(uid)
            self._append(LifecycleRecord(uid=uid, event="end", at=self.clock(), note=why))

    def _recover(self, pod: wire.Pod) -> None:
        record = recovered_placement(
            pod, "bound with lowcarb's decision, no row; seen on the watch"
        )
        if record is None:
            return
        future = self._append(record)
        if future is not None:
            pod_name = f"{pod.metadata.namespace}/{pod.metadata.name}"

            def done(fut: Future[bool]) -> None:
                if not fut.cancelled() and fut.exception() is None and fut.result():
                    log.warning("ledger_placement_recovered", pod=pod_name, node=record.node)

            future.add_done_callback(done)

    def _append(self, record: Record) -> Future[bool] | None:
        try:
            return self.ledger.append(record)
        except Exception as exc:
            metrics.ERRORS.labels("ledger").inc()
            log.error("ledger append failed", error=str(exc))
            return None

    def close(self) -> None:
        self.intents.flush()
        self.ledger.close()
