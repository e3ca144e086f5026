"""The filter's shortlist: pass kube-scheduler only the cheapest feasible nodes, not all of them.

With ``percentageOfNodesToScore: 100`` (what ``deploy/`` ships, so that lowcarb sees every node,
the same ones cycle after cycle, as GPU packing needs) kube-scheduler runs every score plugin
over every feasible node, then sends them all to prioritize and merges the answer node by node:
at 5,000 nodes most of a scheduling cycle.
lowcarb has already priced every candidate when it filters, so its filter can answer with the
``limit`` nodes it would rank highest (best level first, then the lower cost, then the cluster
state's order of the nodes, the same every cycle); kube-scheduler's own plugins then choose
among those, exactly as they choose among the equals of the 0..10 answer. It is
kube-scheduler's own trade (``percentageOfNodesToScore`` samples nodes to score; its floor is
100 nodes) with lowcarb choosing which nodes are scored.

Nodes left off are not failed (kube-scheduler simply does not score them this cycle: no event
names them). A pod whose spec asks kube-scheduler's plugins to weigh every node — a preferred node
or pod (anti-)affinity term, or a ``ScheduleAnyway`` topology spread — always gets them all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from carbon.types import CarbonView
from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.records import Decision
from scheduler.scoring import Evaluation

#: kube-scheduler's own floor on the nodes it scores (``minFeasibleNodesToFind``)
DEFAULT_LIMIT = 100


def weighs_every_node(pod: wire.Pod | None) -> bool:
    """True when the pod carries a soft preference that kube-scheduler's score plugins weigh
    over all feasible nodes (a shortlist would hide nodes it prefers)."""
    if pod is None:
        return False
    spec = pod.spec
    aff = spec.affinity
    if aff is not None:
        node = aff.nodeAffinity
        if node is not None and node.preferredDuringSchedulingIgnoredDuringExecution:
            return True
        for pods in (aff.podAffinity, aff.podAntiAffinity):
            if pods is not None and pods.preferredDuringSchedulingIgnoredDuringExecution:
                return True
    spread = spec.topologySpreadConstraints or ()
    return any(c.whenUnsatisfiable == "ScheduleAnyway" for c in spread)


def shortlist_rows(ev: Evaluation, limit: int) -> np.ndarray | None:
    """Rows of the ``limit`` best feasible nodes of a scored evaluation, in row order; None when
    all feasible rows fit (no shortlist) or the evaluation was not scored.

    Best: the higher ``combined`` (level, then the GPU term's FGD order), then the lower cost,
    then the earlier row (the filter's rows are in the cluster state's order, the same every
    cycle: :meth:`~scheduler.cluster.state.ClusterState.view_for`), so the answer is stable for
    a given state, whatever order kube-scheduler lists the nodes in."""
    feasible = np.flatnonzero(ev.feasible)
    if limit <= 0 or feasible.size <= limit or ev.cost is None:
        return None
    combined = ev.combined[feasible]
    # the limit-th highest combined value: every row above it is in; the rows at it are sorted
    # by (cost, row) for the places left (a partition, not a sort of every feasible row)
    cut = np.partition(combined, combined.size - limit)[combined.size - limit]
    above = np.flatnonzero(combined > cut)
    tied = np.flatnonzero(combined == cut)
    cost = np.nan_to_num(ev.cost.cost[feasible[tied]], nan=np.inf)
    tied = tied[np.lexsort((tied, cost))[: limit - above.size]]  # last key first
    return np.sort(feasible[np.concatenate((above, tied))])


def current(
    decision: Decision,
    names: list[str],
    state: ClusterState,
    engine: Engine,
    carbon: CarbonView,
    clock: Callable[[], float],
) -> Decision:
    """The filter's pricing of every candidate, for prioritize to answer the shortlist from, so
    levels, stranded GPUs, the counterfactual and the candidate count are those of the whole
    list, not of the few.

    Priced again over them all when a shortlisted node changed since (a pod bound or gone
    there, the node updated) or the node set did; pods bound elsewhere meanwhile change no
    shortlisted node's fit, and the filter's moment is as good a moment to price at as this
    one, milliseconds later."""
    if not state.changed_since(decision.generation, names):
        return decision
    generation = state.generation
    table, _ = state.view_for(decision.names)
    share = state.gpu_allocated_share()
    now = clock()
    ev = engine.evaluate(
        decision.demand,
        table,
        carbon,
        now,
        klass=decision.klass,
        duration_s=decision.duration_s,
        fleet_share=share,
    )
    kept = decision.shortlist or {}
    index = {name: i for i, name in enumerate(table.names) if name in kept}
    fresh = Decision(
        decision.demand,
        decision.klass,
        table.names,
        ev,
        table,
        now,
        decision.owner,
        decision.duration_s,
    )
    # a shortlisted node deleted since scores nothing (kube-scheduler sent it: answered 0)
    fresh.shortlist = {name: index.get(name, -1) for name in kept}
    fresh.generation = generation
    return fresh


def scored_hosts(decision: Decision, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The shortlisted ``names`` with a level above 0, and their levels (a 0 and no entry are
    the same to kube-scheduler)."""
    kept = decision.shortlist or {}
    rows = np.fromiter((kept.get(n, -1) for n in names), dtype=np.intp, count=len(names))
    levels = np.zeros(len(names), dtype=np.int64)
    known = rows >= 0
    levels[known] = decision.evaluation.levels[rows[known]]
    scored = levels > 0
    return np.asarray(names, dtype=object)[scored], levels[scored]
