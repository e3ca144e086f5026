"""What a simulated run cost in the one currency the lowcarb policy prices placements in.

Every policy's run is priced with the same prices, the lowcarb policy's for its default class
(what an unclassified trace pod is scored with), compiled as the engine scores with them
(:class:`scheduler.scoring.Pricing`, whose formulas these are), so the figures compare:

    carbon_usd = tCO2e x carbonPerTonne
    gpu_usd    = sum over pods of GPUs x run hours x gpuHour(s at the pod's placement)
                 gpuHour(s) = gpuHourIdle + (gpuHourBusy - gpuHourIdle) x s,
                 s = allocated share of the fleet's GPUs ^ scarcityExponent
    energy_usd = sum over pods of kWh x the zone's electricity price over the pod's run
                 (only when the policy prices energy, ``prices.energy``)
    cost_usd   = their sum

Stranded GPUs are not in it: their price is what the scheduler pays when it places a pod to keep
GPUs usable later, and what that buys or loses shows in the run's waits, which are reported
beside the cost, not priced.
"""

from __future__ import annotations

import numpy as np

from scheduler.scoring import Pricing
from scheduler.sim.replay import Accounting, Placements
from scheduler.sim.trace import SimPods


def run_cost(
    pricing: Pricing, pods: SimPods, placed: Placements, accounting: Accounting
) -> dict[str, float]:
    """``carbon_usd``, ``gpu_usd``, ``cost_usd`` and, when energy is priced, ``energy_usd``."""
    ok = placed.placed
    share = np.clip(np.nan_to_num(placed.share[ok], nan=0.0), 0.0, 1.0)
    per_gpu_hour = pricing.gpu_hour(pricing.scarcity(share))
    gpu_hours = pods.gpu_fraction[ok] * placed.runtime[ok] / 3600.0
    out = {
        "carbon_usd": accounting.tco2e * pricing.carbon_per_tonne,
        "gpu_usd": float((gpu_hours * per_gpu_hour).sum()),
    }
    table, zones = pricing.energy, accounting.zones
    if table is not None:
        rows = np.flatnonzero(ok)
        energy = 0.0
        for start in np.unique(placed.start[rows]):  # one call per placement time
            at = rows[placed.start[rows] == start]
            price = table.mean_price(zones, placed.zone[at], float(start), placed.runtime[at])
            energy += float((accounting.pod_kwh[at] * price).sum())
        out["energy_usd"] = energy
    out["cost_usd"] = sum(out.values())
    return out
