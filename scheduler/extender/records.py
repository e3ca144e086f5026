"""Scheduling decisions and pod lifecycles as ledger records (the scheduler side of the ledger).

Prioritize keeps a :class:`Decision` per pod until bind; a bind turns it into a
:class:`carbon.accounting.ledger.PlacementRecord` (also written to the pod as the
``lowcarb.dev/decision`` annotation); the pod watch turns phase changes into idempotent
:class:`carbon.accounting.ledger.LifecycleRecord` s (``uid:start``, ``uid:end``), so a restart
that relists every pod writes no duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import structlog

from carbon.accounting.ledger import Ledger, LifecycleRecord, PlacementRecord
from carbon.clock import wall
from scheduler import metrics, wire
from scheduler.cluster.state import NodeTable
from scheduler.demand import PodDemand
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

    def row(self, node: str) -> int | None:
        try:
            return self.names.index(node)
        except ValueError:
            return None


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
    """The service's handle on the ledger: decisions at bind, lifecycle from the pod watch."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float] = wall) -> None:
        self.ledger = ledger
        self.clock = clock
        self._running: set[str] = set()

    @classmethod
    def open(cls, path: Path | str) -> LedgerSink:
        return cls(Ledger(path))

    def record_decision(self, record: PlacementRecord) -> Future[bool]:
        return self.ledger.append(record)

    def observe_pod(self, pod: wire.Pod) -> None:
        """Write the start of running for a bound pod seen Running (idempotent by key)."""
        uid = pod.metadata.uid
        if not uid or not pod.spec.nodeName:
            return
        phase = pod.status.phase
        if phase == "Running" and uid not in self._running:
            self._running.add(uid)
            at = _epoch(pod.status.startTime) or self.clock()
            self._append(LifecycleRecord(uid=uid, event="start", at=at))
        elif phase in ("Succeeded", "Failed"):
            self.pod_gone(uid, phase)

    def pod_gone(self, uid: str, why: str = "deleted") -> None:
        """A running pod finished or left the watch: write the end of running."""
        if uid in self._running:
            self._running.discard(uid)
            self._append(LifecycleRecord(uid=uid, event="end", at=self.clock(), note=why))

    def _append(self, record: LifecycleRecord) -> None:
        try:
            self.ledger.append(record)
        except Exception as exc:
            metrics.ERRORS.labels("ledger").inc()
            log.error("ledger append failed", error=str(exc))

    def close(self) -> None:
        self.ledger.close()
