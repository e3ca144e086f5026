"""Bind's re-check: the pod on its chosen node again, against the GPUs as they are at bind time.

kube-scheduler binds in the background while it schedules the next pod, so a GPU slot chosen at
prioritize may be taken by the time the bind arrives; and with one feasible node it skips
prioritize and binds at once. Re-checking the one node (one single-row evaluation) picks a GPU
slot that still has room and gives bind a decision to record in both cases. A whole-GPU pod whose
node nothing touched since it was priced (the cluster state's per-node generation) keeps that
decision without evaluating again. When no slot on the node has room any more, the bind is not
refused: with ``ignorable: true`` (what deploy/ ships) kube-scheduler would then bind the pod
itself, with no annotation and no ledger row ("Skipping extender in bind as it returned error and
has ignorable flag set"); lowcarb binds with its prioritize choice and says so in the decision's
note and the ``lowcarb_errors_total{kind="overcommit_at_bind"}`` metric.
"""

from __future__ import annotations

import structlog

from carbon.types import CarbonView
from scheduler import metrics
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.records import Decision, Seen

log = structlog.get_logger("lowcarb.service")


def check_at_bind(
    node: str,
    decision: Decision | None,
    seen: Seen | None,
    state: ClusterState,
    engine: Engine,
    carbon: CarbonView,
    now: float,
) -> tuple[Decision, int, tuple[int, ...], str] | None:
    """The decision to record for binding the pod to ``node``, its row, the GPU slot(s), and a
    note when the node no longer fits; None when lowcarb never saw the pod (neither a
    ``decision`` from filter/prioritize nor what filter ``seen`` of it)."""
    if decision is not None:
        seen = Seen(decision.demand, decision.klass, decision.owner, decision.duration_s)
    if seen is None:
        return None
    row = decision.row(node) if decision is not None else None
    shares = seen.demand.shares_gpu
    if (
        decision is not None
        and row is not None
        and not shares
        and not state.changed_since(decision.generation, (node,))
    ):
        return decision, row, (), ""  # nothing touched the node since it was priced
    table = state.table_for_node(node)
    if table is None:
        return None
    # scored only when the answer needs it: a shared GPU's slot comes from the GPU term's
    # score, and a bind without prioritize records this evaluation as its decision
    score = row is None or shares
    share = state.gpu_allocated_share()  # scarcity of the fleet, not this one node
    ev = engine.evaluate(
        seen.demand, table, carbon, now, klass=seen.klass, score=score, fleet_share=share
    )
    late = ""
    if ev.feasible[0]:
        gpu_index = engine.gpu_index(ev, 0)
    else:
        why = ev.reasons.get(0, "infeasible")
        late = f"overcommit at bind: {node} no longer fits ({why})"
        metrics.ERRORS.labels("overcommit_at_bind").inc()
        log.warning("bind_overcommits", pod=seen.demand.key, node=node, reason=why)
        gpu_index = ()
        if decision is not None and row is not None:
            gpu_index = engine.gpu_index(decision.evaluation, row)
    if decision is None or row is None:
        decision = Decision(
            seen.demand, seen.klass, table.names, ev, table, now, seen.owner, seen.duration_s
        )
        row = 0
    return decision, row, gpu_index, late
