"""Carbon accounting of finished pods: energy, location/market-based and embodied emissions.

For each pod with a placement and a finished run in the ledger, :class:`Accountant` computes one
:class:`~carbon.accounting.ledger.UsageRecord`:

* **energy**: measured through Prometheus' HTTP query API when a URL is configured (Kepler
  ``kepler_container_joules_total``, or DCGM ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` for the GPUs
  plus the power model for CPU and memory), else the policy's power model over the *actual*
  runtime; both times the site's PUE. The method is recorded per row.
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

import asyncio
import bisect
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from carbon.accounting.ledger import (
    GateRecord,
    Ledger,
    PlacementRecord,
    UsageRecord,
    open_reader,
    read_records,
)
from carbon.clock import Clock, wall
from carbon.config import Intensity
from carbon.duration import Duration
from carbon.energy import PowerModel, energy_kwh
from carbon.types import IntensityPoint

log = logging.getLogger(__name__)

_GIB = 1024.0**3


class AccountingError(Exception):
    """A pod that cannot be accounted (no intensity at all for its zone)."""


class IntensityHistory(Protocol):
    """What accounting needs from a carbon provider: past intensity of a zone."""

    async def history(self, zone: str, start: datetime, end: datetime) -> Sequence[IntensityPoint]:
        """Points covering [start, end) (hourly or finer), oldest first."""
        ...


class ChainHistory:
    """History along the carbon fallback chain: the first provider that answers with points.

    ``providers`` is called on every lookup, so a policy reload that rebuilds the providers is
    followed, e.g. ``ChainHistory(lambda: [cache.providers()[n] for n in
    cache.config.fallback])``. Raises the last error when no provider has history.
    """

    def __init__(self, providers: Callable[[], Sequence[IntensityHistory]]) -> None:
        self._providers = providers

    async def history(self, zone: str, start: datetime, end: datetime) -> Sequence[IntensityPoint]:
        last: Exception | None = None
        for provider in self._providers():
            try:
                points = await provider.history(zone, start, end)
            except Exception as exc:  # next in the chain, as the cache does for latest values
                last = exc
                continue
            if points:
                return points
        if last is not None:
            raise last
        return []


class PrometheusConfig(BaseModel):
    """Measured energy through Prometheus' HTTP API (``/api/v1/query``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: str = Field(description="Prometheus base URL, e.g. http://prometheus.monitoring:9090")
    source: Literal["kepler", "dcgm"] = Field(
        default="kepler",
        description="kepler: kepler_container_joules_total (whole pod); dcgm: GPU energy counter "
        "plus the power model for CPU and memory",
    )
    metric: str | None = Field(default=None, description="Override the counter's metric name")
    namespace_label: str | None = Field(default=None, alias="namespaceLabel")
    pod_label: str | None = Field(default=None, alias="podLabel")
    timeout: Duration = Field(default="10s", validate_default=True, description="Per-query timeout")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: use an http:// or https:// URL of the Prometheus server")
        return value.rstrip("/")


class AccountingPolicy(BaseModel):
    """The ``accounting:`` policy section: market-based factors and the energy measurement."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    market_factors: dict[str, Intensity] = Field(
        default_factory=dict,
        alias="marketFactors",
        description="Contractual emission factor per zone (PPAs, green tariffs), gCO2e/kWh",
    )
    residual_mix: dict[str, Intensity] = Field(
        default_factory=dict,
        alias="residualMix",
        description="Residual-mix factor per zone for energy not covered by a contract",
    )
    prometheus: PrometheusConfig | None = None


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


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_METER_DEFAULTS = {
    # source: (metric, namespace label, pod label, unit -> joules)
    "kepler": ("kepler_container_joules_total", "container_namespace", "pod_name", 1.0),
    "dcgm": ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "namespace", "pod", 1e-3),  # mJ
}


class PrometheusMeter:
    """Reads a pod's energy over its run from Prometheus (``increase()`` of a joule counter)."""

    def __init__(self, config: PrometheusConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        metric, ns_label, pod_label, self._scale = _METER_DEFAULTS[config.source]
        self._metric = config.metric or metric
        self._ns_label = config.namespace_label or ns_label
        self._pod_label = config.pod_label or pod_label
        self._client = client or httpx.AsyncClient(timeout=config.timeout)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    def query(self, namespace: str, name: str, seconds: float) -> str:
        """The PromQL expression for the pod's counter increase over its run."""
        selector = (
            f"{self._ns_label}={_promql_string(namespace)},{self._pod_label}={_promql_string(name)}"
        )
        window = max(math.ceil(seconds), 1)
        return f"sum(increase({self._metric}{{{selector}}}[{window}s]))"

    async def energy(
        self, namespace: str, name: str, start: float, end: float
    ) -> MeasuredEnergy | None:
        """Joules of the pod over [start, end), or None when Prometheus has no such series."""
        params = {"query": self.query(namespace, name, end - start), "time": f"{end:.3f}"}
        resp = await self._client.get(f"{self.config.url}/api/v1/query", params=params)
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise httpx.HTTPError(f"prometheus: {body.get('errorType')}: {body.get('error')}")
        result = body.get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        if not math.isfinite(value) or value < 0:
            return None
        method: Literal["kepler", "dcgm+model"] = (
            "kepler" if self.config.source == "kepler" else "dcgm+model"
        )
        return MeasuredEnergy(joules=value * self._scale, method=method)


_PENDING_SQL = """
SELECT p.uid, s.at, e.at
FROM placement p
JOIN lifecycle e ON e.uid = p.uid AND e.event = 'end'
LEFT JOIN lifecycle s ON s.uid = p.uid AND s.event = 'start'
WHERE e.at <= ? AND NOT EXISTS (SELECT 1 FROM usage u WHERE u.uid = p.uid)
  AND p.uid NOT IN (SELECT value FROM json_each(?))
ORDER BY e.at
LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class _Pending:
    placement: PlacementRecord
    start: float
    end: float
    gate: GateRecord | None
    note: str | None


class Accountant:
    """Accounts every finished, not yet accounted pod of a ledger; safe to re-run (idempotent).

    Runs on the service's event loop: SQLite reads go to a worker thread, writes through the
    ledger's writer thread, history and Prometheus calls are async.
    """

    def __init__(
        self,
        ledger: Ledger,
        history: IntensityHistory | None,
        *,
        power: PowerModel | None = None,
        policy: AccountingPolicy | None = None,
        meter: PrometheusMeter | None = None,
        clock: Clock = wall,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.history = history
        self.power = power or PowerModel()
        self.policy = policy or AccountingPolicy()
        if meter is None and self.policy.prometheus is not None:
            meter = PrometheusMeter(self.policy.prometheus)
        self.meter = meter
        # pods that could not be accounted (no intensity at all): skipped until restart so they
        # never crowd out the others within ``limit``
        self.unaccountable: set[str] = set()

    async def account_pending(self, limit: int = 10_000, settle_s: float = 0.0) -> int:
        """Account up to ``limit`` finished pods; returns how many new usage rows were written.

        Only runs that ended at least ``settle_s`` ago are taken, so a provider's history (often
        published an hour or two late) covers them; rows are final once written.
        """
        cutoff = self.clock() - settle_s
        skip = json.dumps(sorted(self.unaccountable))
        pending = await asyncio.to_thread(_load_pending, self.ledger.path, limit, cutoff, skip)
        by_zone: dict[str, list[_Pending]] = {}
        for item in pending:
            by_zone.setdefault(item.placement.zone or "", []).append(item)
        written = 0
        for zone, items in by_zone.items():
            points, problem = await self._history(zone, items)
            for item in items:
                record = await self._account_one(item, points, problem)
                if record is None:
                    self.unaccountable.add(item.placement.uid)
                elif await self.ledger.append_async(record):
                    written += 1
        return written

    async def run(self, interval_s: float = 300.0, settle_s: float = 3600.0) -> None:
        """Account periodically until cancelled (a background task of ``lowcarb serve``)."""
        while True:
            try:
                written = await self.account_pending(settle_s=settle_s)
                if written:
                    log.info("accounted %d finished pods", written)
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("accounting pass failed")
            await asyncio.sleep(interval_s)

    async def _history(
        self, zone: str, items: list[_Pending]
    ) -> tuple[list[IntensityPoint], str | None]:
        if not zone:
            return [], "node has no grid zone; decision-time intensity used"
        if self.history is None:
            return [], "no intensity history configured; decision-time intensity used"
        lo = min(i.start for i in items)
        hi = max(i.end for i in items)
        try:
            pts = await self.history.history(
                zone, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
            )
        except Exception as exc:  # provider down: decision-time intensity, marked estimated
            log.warning("intensity history for %s unavailable: %s", zone, exc)
            return [], f"intensity history unavailable ({exc}); decision-time intensity used"
        return sorted(pts, key=lambda p: p.start), None

    async def _account_one(
        self, item: _Pending, points: list[IntensityPoint], problem: str | None
    ) -> UsageRecord | None:
        note = _join(item.note, problem) if problem else item.note
        measured = None
        if self.meter is not None:
            pl = item.placement
            try:
                measured = await self.meter.energy(pl.namespace, pl.name, item.start, item.end)
                if measured is None:
                    note = _join(note, "prometheus had no energy series; power model used")
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
                note = _join(note, f"prometheus query failed ({exc}); power model used")
        try:
            return compute_usage(
                item.placement,
                item.start,
                item.end,
                points,
                power=self.power,
                policy=self.policy,
                measured=measured,
                gate=item.gate,
                now=self.clock(),
                note=note,
            )
        except AccountingError as exc:
            log.warning("pod %s not accounted: %s", item.placement.uid, exc)
            return None


def _join(a: str | None, b: str) -> str:
    return b if not a else f"{a}; {b}"


def _load_pending(path: Path, limit: int, cutoff: float, skip: str) -> list[_Pending]:
    conn = open_reader(path)
    try:
        rows = conn.execute(_PENDING_SQL, (cutoff, skip, limit)).fetchall()
        if not rows:
            return []
        uids = {r[0] for r in rows}
        placements = {p.uid: p for p in read_records(conn, PlacementRecord, uids)}
        gates = {g.uid: g for g in read_records(conn, GateRecord, uids)}
    finally:
        conn.close()
    out = []
    for uid, start, end in rows:
        pl = placements[uid]
        note = None
        if start is None:
            start, note = pl.at, "no start-of-running event; decision time used as start"
        out.append(_Pending(pl, float(start), float(end), gates.get(uid), note))
    return out
