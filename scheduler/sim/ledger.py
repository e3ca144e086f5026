"""Write one simulated run into a lowcarb ledger, then account it as the service would.

Placement records (node, zone, GPU model, requests, intensity at the decision) and lifecycle
records (start and end of running) go in with :meth:`carbon.accounting.ledger.Ledger.append_many`;
then
:class:`carbon.accounting.accountant.Accountant` computes the usage rows over the recorded series,
exactly as
it does for live pods. ``lowcarb report --ledger FILE`` on the result reports the same location-
based total as the simulator (``tests/simulate`` checks that they agree).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger, LifecycleRecord, PlacementRecord, Record
from scheduler.sim.carbon import Integrals, SeriesHistory
from scheduler.sim.run import Comparison


def records(c: Comparison, name: str) -> list[Record]:
    """Placement and lifecycle records of run ``name`` (pods that never fitted are skipped)."""
    run = c.runs[name]
    p, pods, nodes = run.placements, c.pods, c.nodes
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
                candidates=len(nodes),
                note=f"simulated ({name}); held {held / 3600:.2f} h by the gate" if held else None,
            )
        )
        out.append(LifecycleRecord(uid=uid, event="start", at=start))
        out.append(LifecycleRecord(uid=uid, event="end", at=end))
    return out


def write_ledger(c: Comparison, name: str, path: Path) -> int:
    """Record run ``name`` into the ledger at ``path`` and account it; returns usage rows."""
    recs = records(c, name)
    with Ledger(path, synchronous="NORMAL") as ledger:
        ledger.append_many(recs)
        accountant = Accountant(ledger, SeriesHistory(c.series), power=c.power)
        return asyncio.run(_account_all(accountant))


async def _account_all(accountant: Accountant) -> int:
    total = 0
    while True:
        done = await accountant.account_pending(limit=50_000)
        total += done
        if done == 0:
            return total
