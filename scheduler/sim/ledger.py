"""Write one simulated run into a lowcarb ledger, then account it as the service would.

Placement records (node, zone, GPU model, requests, intensity at the decision, the expected and
counterfactual emissions) and lifecycle records (start and end of running) go in with
:meth:`carbon.accounting.ledger.Ledger.append_many`; then
:class:`carbon.accounting.accountant.Accountant` computes the usage rows over the recorded series,
exactly as it does for live pods, with the lowcarb policy's ``accounting`` section (market-based
factors, residual mix; never a Prometheus meter: simulated pods have no measured energy).
``lowcarb report --ledger FILE`` on the result reports the same location-based total as the
simulator (``tests/sim`` checks that they agree).

The counterfactual is a placement, not an estimate: the same pod in the same simulation placed by
``k8s-default`` (carbon-blind, no gate holds). Each placement record carries that run's emissions
of the pod as ``counterfactual_kg`` and this run's as ``expected_kg``, so the accountant's
``avoided_kg`` = counterfactual - location-based is what this policy saved against kube-scheduler's
default on that pod (spatial and temporal together; 0 for k8s-default itself, and for pods the
counterfactual run never placed). Gate holds are noted on the placement, not written as gate
records, which would count the temporal part twice.
"""

from __future__ import annotations

import asyncio

import numpy as np

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger, LedgerTarget, LifecycleRecord, PlacementRecord, Record
from carbon.accounting.settings import AccountingPolicy
from scheduler.sim.baselines import Baseline
from scheduler.sim.carbon import Integrals, SeriesHistory
from scheduler.sim.run import REFERENCE, Comparison

COUNTERFACTUAL_NOTE = f"counterfactual: {REFERENCE}'s placement of this pod in the same simulation"


def records(c: Comparison, name: str) -> list[Record]:
    """Placement and lifecycle records of run ``name`` (pods that never fitted are skipped)."""
    run = c.runs[name]
    p, pods, nodes = run.placements, c.pods, c.nodes
    base = c.runs[REFERENCE]
    base_ok = base.placements.placed
    integrals = Integrals.of(c.series)
    zones = list(c.zones)
    out: list[Record] = []
    for i in np.flatnonzero(p.placed).tolist():
        node = int(p.node[i])
        zone = nodes.zone[node]
        start = float(p.start[i])
        end = start + float(p.runtime[i])
        now_g = float(integrals.mean(zones.index(zone), np.array([start]), np.array([start]))[0])
        uid = f"sim-{name}-{i}"
        held = float(run.hold_s[i])
        notes = [f"simulated ({name})", COUNTERFACTUAL_NOTE]
        if held:
            notes.append(f"held {held / 3600:.2f} h by the gate")
        out.append(
            PlacementRecord(
                uid=uid,
                namespace="trace",
                name=pods.names[i],
                at=start,
                node=nodes.names[node],
                zone=zone,
                workload_class="batch" if pods.qos[i] == "BE" else "default",
                gpu_model=nodes.model[node] or None,
                gpus=int(pods.gpus[i]),
                gpu_milli=int(pods.gpu_milli[i]) if pods.gpus[i] else 1000,
                cpu_milli=int(pods.cpu_milli[i]),
                memory_bytes=int(pods.mem_bytes[i]),
                intensity_g_per_kwh=now_g,
                intensity_source=c.series[zone].source,
                intensity_age_s=0.0,
                expected_kg=float(run.accounting.pod_kg[i]),
                expected_duration_s=float(p.runtime[i]),
                counterfactual_kg=float(base.accounting.pod_kg[i]) if base_ok[i] else None,
                counterfactual_g_per_kwh=(
                    float(base.accounting.pod_intensity[i]) if base_ok[i] else None
                ),
                candidates=len(nodes),
                note="; ".join(notes),
            )
        )
        out.append(LifecycleRecord(uid=uid, event="start", at=start))
        out.append(LifecycleRecord(uid=uid, event="end", at=end))
    return out


def accounting_policy(c: Comparison) -> AccountingPolicy:
    """The lowcarb policy's ``accounting`` section, without its energy meter."""
    found = c.policies.get("lowcarb")
    policy = found.policy if isinstance(found, Baseline) else found
    section = policy.accounting if policy is not None else AccountingPolicy()
    return section.model_copy(update={"prometheus": None})


def write_ledger(c: Comparison, name: str, path: LedgerTarget) -> int:
    """Record run ``name`` into the ledger at ``path`` and account it; returns usage rows."""
    recs = records(c, name)
    with Ledger(path, synchronous="NORMAL") as ledger:
        ledger.append_many(recs)
        accountant = Accountant(
            ledger, SeriesHistory(c.series), power=c.power, policy=accounting_policy(c)
        )
        return asyncio.run(_account_all(accountant))


async def _account_all(accountant: Accountant) -> int:
    total = 0
    while True:
        done = await accountant.account_pending(limit=50_000)
        total += done
        if done == 0:
            return total
