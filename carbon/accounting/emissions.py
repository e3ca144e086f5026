"""Energy and emissions of one finished pod run: pure arithmetic, no I/O.

For a pod with a placement and a run over [start, end), :func:`compute_usage` gives its
:class:`~carbon.accounting.records.UsageRecord`:

* **energy**: measured (:class:`MeasuredEnergy` from Prometheus: Kepler for the whole pod, or DCGM
  for the GPUs plus the power model for CPU and memory), else the policy's power model
  (:mod:`carbon.energy`) over the *actual* runtime; both times the site's PUE. The method is
  recorded per row.
* **location-based**: energy x the time-weighted mean of the zone's hourly intensity history over
  [start, end) (power taken as constant over the run). Hours the history does not cover use the
  intensity the scheduler saw at the decision, and count as estimated (``estimated_kg``).
* **market-based**: energy x the zone's contractual factor from the policy, else its residual mix,
  else the location-based value (GHG Protocol Scope 2 hierarchy); the basis is recorded.
* **embodied**: GPU-hours x the GPU model's ``embodiedGPerHour`` from the power model.
* **counterfactual** (carbon-unaware): location-based emissions x (mean expected emissions over
  the feasible candidates / expected emissions on the chosen node) from the placement record,
  x (expected intensity when first held / at release) for pods a gate held. ``avoided_kg`` =
  counterfactual - location-based (negative when lowcarb did worse). Neither is ever added to
  the inventory columns.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from carbon.accounting.records import GateRecord, PlacementRecord, UsageRecord
from carbon.accounting.settings import AccountingPolicy
from carbon.clock import wall
from carbon.energy import PowerModel, energy_kwh
from carbon.types import IntensityPoint

_GIB = 1024.0**3


class AccountingError(Exception):
    """A pod that cannot be accounted (no intensity at all for its zone)."""


@dataclass(frozen=True, slots=True)
class Integrated:
    """Mean intensity over a run and the share of the run resting on estimated data."""

    mean_g_per_kwh: float
    estimated_fraction: float


def integrate(
    points: Sequence[IntensityPoint], start_s: float, end_s: float, fallback: float | None
) -> Integrated:
    """Time-weighted mean intensity over [start_s, end_s) from points sorted by start.

    Seconds no point covers use ``fallback`` (else the mean of the covered part) and count as
    estimated, as do points the provider flags as estimated.
    """
    span = end_s - start_s
    if span <= 0:
        g = fallback if fallback is not None else _nearest(points, start_s)
        if g is None:
            raise AccountingError("no intensity data and no decision-time intensity")
        return Integrated(g, 0.0 if points else 1.0)
    starts = [p.start.timestamp() for p in points]
    i = max(bisect.bisect_right(starts, start_s) - 1, 0)
    covered = weighted = estimated = 0.0
    for p in points[i:]:
        ps = p.start.timestamp()
        if ps >= end_s:
            break
        overlap = min(end_s, p.end.timestamp()) - max(start_s, ps)
        if overlap <= 0:
            continue
        covered += overlap
        weighted += overlap * p.g_per_kwh
        if p.estimated:
            estimated += overlap
    covered = min(covered, span)  # overlapping points from a sloppy source never exceed the run
    gap = span - covered
    if gap > 1e-6:
        fill = fallback
        if fill is None:
            fill = weighted / covered if covered > 0 else _nearest(points, start_s)
        if fill is None:
            raise AccountingError("no intensity data and no decision-time intensity")
        weighted += gap * fill
        estimated += gap
    return Integrated(weighted / span, min(estimated / span, 1.0))


def _nearest(points: Sequence[IntensityPoint], at: float) -> float | None:
    if not points:
        return None
    best = min(points, key=lambda p: abs(p.start.timestamp() - at))
    return best.g_per_kwh


def gpu_equivalents(rec: PlacementRecord) -> float:
    """GPUs the pod holds; one shared GPU counts fractionally (``gpu_milli`` / 1000).

    Same convention as ``PodDemand.gpu_fraction``: several GPUs are always whole GPUs.
    """
    if rec.gpus <= 0:
        return 0.0
    if rec.gpus == 1 and 0 < rec.gpu_milli < 1000:
        return rec.gpu_milli / 1000.0
    return float(rec.gpus)


@dataclass(frozen=True, slots=True)
class MeasuredEnergy:
    """Energy read from Prometheus for one pod, in joules of IT load (before PUE)."""

    joules: float
    method: Literal["kepler", "dcgm+model"]


def compute_usage(
    placement: PlacementRecord,
    start: float,
    end: float,
    points: Sequence[IntensityPoint],
    *,
    power: PowerModel,
    policy: AccountingPolicy,
    measured: MeasuredEnergy | None = None,
    gate: GateRecord | None = None,
    now: float | None = None,
    note: str | None = None,
) -> UsageRecord:
    """The usage row of one pod run over [start, end) (epoch seconds). Pure, no I/O."""
    seconds = max(end - start, 0.0)
    gpus = gpu_equivalents(placement)
    product = placement.gpu_model or ""
    cpu_cores = placement.cpu_milli / 1000.0
    mem_gib = placement.memory_bytes / _GIB
    pue = power.pue_for(placement.zone, placement.region)
    if measured is None:
        watts = power.it_watts(product, gpus, cpu_cores, mem_gib)
        kwh = energy_kwh(watts, pue, seconds)
        method = "model"
    elif measured.method == "kepler":
        kwh = measured.joules * pue / 3.6e6
        method = "kepler"
    else:
        host = power.it_watts(product, 0.0, cpu_cores, mem_gib)
        kwh = (measured.joules + host * seconds) * pue / 3.6e6
        method = "dcgm+model"

    integ = integrate(points, start, end, placement.intensity_g_per_kwh)
    location_kg = kwh * integ.mean_g_per_kwh / 1000.0

    zone = placement.zone or ""
    basis: Literal["contract", "residual", "location"]
    if zone in policy.market_factors:
        market_g, basis = policy.market_factors[zone], "contract"
    elif zone in policy.residual_mix:
        market_g, basis = policy.residual_mix[zone], "residual"
    else:
        market_g, basis = integ.mean_g_per_kwh, "location"

    gpu_hours = gpus * seconds / 3600.0
    embodied_kg = power.gpu(product).embodiedGPerHour * gpu_hours / 1000.0 if gpu_hours > 0 else 0.0

    ratio = _counterfactual_ratio(placement, gate)
    counterfactual_kg = location_kg * ratio
    return UsageRecord(
        uid=placement.uid,
        namespace=placement.namespace,
        name=placement.name,
        workload_class=placement.workload_class,
        job=placement.job,
        node=placement.node,
        zone=placement.zone,
        gpu_model=placement.gpu_model,
        start=start,
        end=end,
        day=datetime.fromtimestamp(start, UTC).date().isoformat(),
        gpu_hours=gpu_hours,
        energy_kwh=kwh,
        co2e_location_kg=location_kg,
        co2e_market_kg=kwh * market_g / 1000.0,
        market_basis=basis,
        embodied_kg=embodied_kg,
        counterfactual_kg=counterfactual_kg,
        avoided_kg=counterfactual_kg - location_kg,
        estimated_kg=location_kg * integ.estimated_fraction,
        method=method,
        accounted_at=wall() if now is None else now,
        note=note,
    )


def _counterfactual_ratio(placement: PlacementRecord, gate: GateRecord | None) -> float:
    spatial = 1.0
    cf, exp = placement.counterfactual_kg, placement.expected_kg
    if cf is not None and exp is not None and exp > 0:
        spatial = cf / exp
    else:
        cf_g, used_g = placement.counterfactual_g_per_kwh, placement.intensity_g_per_kwh
        if cf_g is not None and used_g is not None and used_g > 0:
            spatial = cf_g / used_g
    temporal = 1.0
    if gate is not None:
        now_g, rel_g = gate.intensity_now_g_per_kwh, gate.intensity_release_g_per_kwh
        if now_g is not None and rel_g is not None and rel_g > 0:
            temporal = now_g / rel_g
    return spatial * temporal
