"""What the policy allows a gated pod: its class's ``temporalShift`` and the zones it may run in.

:func:`policy_rules` turns the current policy into the controller's per-pod :class:`ShiftRules`
(may it wait, how long at most, for what saving, default expected duration), memoised per pod so
a re-plan of thousands of pods does not classify each one again; :func:`zones_from_state` finds
the zones of the known nodes that could run the pod (GPU count and model) within the class's
allowed zones, from the synced :class:`scheduler.cluster.state.ClusterState`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from scheduler import wire
from scheduler.gates.request import RulesFor, ShiftRules


def policy_rules(
    policy: Callable[[], Any],
    zones_for: Callable[[wire.Pod, Any], Iterable[str]],
    *,
    ttl_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> RulesFor:
    """Rules from the current policy: the pod's class ``temporalShift`` and allowed zones.

    Memoised per pod (uid, resourceVersion, policy object) for ``ttl_s`` so that a re-plan of
    thousands of pods does not classify each one again (zones follow node changes within ttl).
    """
    from scheduler.policy.classes import classify

    memo: dict[str, tuple[str, int, float, ShiftRules]] = {}

    def compute(pod: wire.Pod, current: Any) -> ShiftRules:
        choice = classify(current, pod)
        shift = choice.workload_class.temporalShift
        zones = tuple(zones_for(pod, choice.workload_class))
        if shift is None:  # the pod opted in by its gate; the class sets no limits
            return ShiftRules(default_duration_s=choice.duration_s, zones=zones)
        return ShiftRules(
            enabled=shift.enabled,
            max_delay_s=shift.max_delay_s,
            min_saving=float(shift.minSaving),
            default_duration_s=choice.duration_s,
            zones=zones,
        )

    def rules(pod: wire.Pod) -> ShiftRules:
        current = policy()
        now = clock()
        uid, rv = pod.metadata.uid, pod.metadata.resourceVersion
        hit = memo.get(uid)
        if hit is not None and hit[0] == rv and hit[1] == id(current) and hit[2] > now:
            return hit[3]
        result = compute(pod, current)
        if len(memo) > 200_000:
            memo.clear()
        memo[uid] = (rv, id(current), now + ttl_s, result)
        return result

    return rules


def zones_from_state(
    state: Any, *, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
) -> Callable[[wire.Pod, Any], list[str]]:
    """Zones of the known nodes that could run the pod (GPU count and model), within the class's
    allowed zones. The node table is read at most once per ``ttl_s``; answers are memoised per
    (GPUs, models, class constraints) in between."""
    from scheduler.demand import DemandError, parse_demand

    cached: dict[str, Any] = {"at": float("-inf"), "table": None, "memo": {}}

    def zones(pod: wire.Pod, workload_class: Any) -> list[str]:
        now = clock()
        if now - cached["at"] > ttl_s:
            cached.update(at=now, table=state.full_table(), memo={})
        table = cached["table"]
        try:
            demand = parse_demand(pod)
        except DemandError:
            return []
        constraints = getattr(workload_class, "constraints", None)
        key = (demand.gpus, demand.models, id(constraints))
        memo: dict[Any, list[str]] = cached["memo"]
        if key in memo:
            return memo[key]
        fits = np.asarray(table.gpu_total) >= demand.gpus
        if demand.models:
            wanted = [i for i, m in enumerate(table.models) if m in demand.models]
            fits &= np.isin(table.gpu_model, wanted)
        found = {table.zones[z] for z in np.asarray(table.zone)[fits].tolist() if z >= 0}
        if constraints is not None:
            found = {z for z in found if constraints.zone_allowed(z)}
        memo[key] = sorted(found)
        return memo[key]

    return zones
