"""The filter's shortlist: pass kube-scheduler only the cheapest feasible nodes, not all of them.

With ``percentageOfNodesToScore: 100`` (what ``deploy/`` ships, so that the cleanest zone is never
left unscored) kube-scheduler runs every score plugin over every feasible node, then sends them all
to prioritize and merges the answer node by node: at 5,000 nodes most of a scheduling cycle.
lowcarb has already priced every candidate when it filters, so its filter can answer with the
``limit`` nodes it would rank highest (best level first, then the lower cost, then the request's
order); kube-scheduler's own plugins then choose among those, exactly as they choose among the
equals of the 0..10 answer. It is kube-scheduler's own trade (``percentageOfNodesToScore``
samples nodes to score; its floor is 100 nodes) with lowcarb choosing which nodes are scored.

Nodes left off are not failed (kube-scheduler simply does not score them this cycle: no event
names them). A pod whose spec asks kube-scheduler's plugins to weigh every node — a preferred node
or pod (anti-)affinity term, or a ``ScheduleAnyway`` topology spread — always gets them all.
"""

from __future__ import annotations

import numpy as np

from scheduler import wire
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
    then the earlier row (kube-scheduler's order), so the answer is stable for a given state."""
    feasible = np.flatnonzero(ev.feasible)
    if limit <= 0 or feasible.size <= limit or ev.cost is None:
        return None
    combined = ev.combined[feasible]
    cost = np.nan_to_num(ev.cost.cost[feasible], nan=np.inf)
    order = np.lexsort((feasible, cost, -combined))  # last key first
    return np.sort(feasible[order[:limit]])
