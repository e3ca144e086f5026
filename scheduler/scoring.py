"""Combine the terms into one decision per pod: feasibility, cost in one currency, level 0..10.

A class's evaluation is a list of :class:`Step` s (a term, its per-class ``args``, and whether it
is scored at all); the engine builds one per class. Every step's filter runs in order (each sees
the rows the earlier ones left in ``Context.feasible``); then each scored term scores the feasible
rows, and :func:`price` turns their physical quantities into each node's cost (USD: emissions,
GPU time, stranded GPUs (the FGD delta plus the node's place in the fleet's fill order,
:mod:`scheduler.costs.fill_order`; past the horizon at the fleet's long-run scarcity,
:mod:`scheduler.costs.scarcity`), and energy where the policy prices it, see
:mod:`scheduler.costs.energy`); :func:`scheduler.quantize.quantize_cost` maps cost differences
that matter to kube-scheduler's integer 0..10. This is the one scoring model (policy
``lowcarb.dev/v2``; the class-weights sum of ``v1`` is gone). The :class:`Evaluation` keeps every
term's raw values and the cost arithmetic: ``/explain``, the ledger and the simulator read the
same object the extender answers from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from scheduler.cluster.table import LazyReasons
from scheduler.costs.energy import EnergyTable
from scheduler.costs.fill_order import FillOrder
from scheduler.costs.scarcity import LongRunScarcity
from scheduler.quantize import nudge_top, quantize_cost
from scheduler.terms.base import Context, Term, TermArgs, TermScore
from scheduler.terms.carbon import gpu_share

#: a scalar for one cycle's price; an array for a simulated run's pods (``scheduler.sim.costing``)
FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)


class Step(NamedTuple):
    """One term's part in evaluating a class: its filter always runs; when ``scored``, its score
    is computed (the cost model reads it)."""

    term: Term[Any]
    args: TermArgs  # the term's ``Args`` for this class
    scored: bool = True


@dataclass(frozen=True, slots=True)
class Pricing:
    """The policy's ``prices`` as plain floats (read per cycle; no pydantic in the loop)."""

    carbon_per_tonne: float = 190.0
    gpu_hour_idle: float = 0.005
    gpu_hour_busy: float = 0.005
    stranded_gpu_hour: float = 4.10
    scarcity_exponent: float = 2.0
    indifference: float = 0.02
    full_scale: float = 1.0
    energy: EnergyTable | None = None  # ``prices.energy``; None: energy is not priced
    fill_order_gpus: float = 2.0
    # ranks the zones by their long-run intensity (the policy's static table); None: name order
    fill_order: FillOrder | None = None
    # stranded GPUs past this many run hours are priced at the fleet's long-run scarcity
    # (``long_scarcity``); None: at this cycle's scarcity over the whole run
    scarcity_horizon_h: float | None = None
    long_scarcity: LongRunScarcity | None = None

    def scarcity(self, share: FloatOrArray) -> FloatOrArray:
        """s = allocated share of the fleet's GPUs ^ scarcityExponent (0 idle .. 1 full)."""
        return share**self.scarcity_exponent

    def gpu_hour(self, scarcity: FloatOrArray) -> FloatOrArray:
        """gpuHour(s), USD per occupied GPU-hour: gpuHourIdle when idle .. gpuHourBusy when full."""
        return self.gpu_hour_idle + (self.gpu_hour_busy - self.gpu_hour_idle) * scarcity


@dataclass(slots=True)
class CostBreakdown:
    """Each node's cost arithmetic (USD; NaN where infeasible) and the fleet's scarcity."""

    allocated_share: float
    scarcity: float
    gpu_hour_price: float
    stranded_hour_price: float
    gpu_hours: np.ndarray  # GPUs x run hours on the node's model
    # FGD fragmentation delta + fill-order GPUs, beyond the candidates' least, GPUs
    stranded_gpus: np.ndarray
    carbon_usd: np.ndarray
    gpu_usd: np.ndarray
    stranded_usd: np.ndarray
    cost: np.ndarray
    # USD per kWh over the run and kWh x that (zeros, price NaN, when energy is not priced)
    energy_price: np.ndarray | None = None
    energy_usd: np.ndarray | None = None
    # fillOrderGpus x the node's position in the fleet's fill order (0 front .. <1 back), GPUs
    fill_gpus: np.ndarray | None = None
    # run hours past ``scarcity_horizon_h`` strand GPUs at the fleet's long-run scarcity
    # (NaN: the whole run at ``scarcity``)
    scarcity_horizon_h: float = math.nan
    long_run_scarcity: float = math.nan


def allocated_share(ctx: Context) -> float:
    """Allocated share of the fleet's GPUs: ``ctx.fleet_share`` when the caller knows the whole
    fleet, else the candidate table's (which reads low under load: kube-scheduler sends the
    nodes where the pod still fits, so the full ones are missing)."""
    if ctx.fleet_share is not None:
        return float(min(max(ctx.fleet_share, 0.0), 1.0))
    return ctx.table.allocated_gpu_share()


def price(
    ctx: Context, scores: Mapping[str, TermScore], pricing: Pricing, share: float
) -> CostBreakdown:
    """Cost per row of ``ctx.table`` from the carbon and gpu_fit terms' physical quantities."""
    n = len(ctx.table)
    scarcity = pricing.scarcity(share)
    gpu_price = pricing.gpu_hour(scarcity)
    stranded_price = pricing.stranded_gpu_hour * scarcity
    carbon = scores.get("carbon")
    run_h = np.full(n, ctx.duration_s / 3600.0)
    grams = np.zeros(n)
    if carbon is not None:
        grams = np.asarray(carbon.raw, dtype=np.float64)
        known = np.isfinite(grams)
        if known.any() and not known.all():  # unknown zone: neutral, the candidates' mean
            grams = np.where(known, grams, float(grams[known].mean()))
        hours = carbon.detail.get("run_h")
        if hours is not None:
            run_h = np.asarray(hours, dtype=np.float64)
    gpu_hours = gpu_share(ctx.pod) * run_h if ctx.pod.wants_gpu else np.zeros(n)
    fit = scores.get("gpu_fit")
    stranded = np.zeros(n)
    fill = np.zeros(n)
    if fit is not None and fit.unit == "fragmented GPUs added":
        stranded = np.nan_to_num(np.asarray(fit.raw, dtype=np.float64), nan=0.0)
        if n and pricing.fill_order_gpus > 0.0:  # consolidation: a node later in the fleet's
            # fill order (dirtier zone, then name order) counts up to fillOrderGpus stranded
            position = (
                pricing.fill_order.position(ctx.table)
                if pricing.fill_order is not None
                else 1.0 - ctx.table.name_order()
            )
            fill = pricing.fill_order_gpus * position
            stranded = stranded + fill
        if n:  # beyond the least any candidate strands: filling a fragment (a negative delta)
            # earns no credit that grows with a slow GPU's longer run, and costs stay >= 0
            stranded = stranded - float(stranded.min())
    carbon_usd = np.nan_to_num(grams, nan=0.0) / 1e6 * pricing.carbon_per_tonne
    gpu_usd = gpu_hours * gpu_price
    stranded_usd = stranded * run_h * stranded_price
    horizon_h = far_s = math.nan
    if pricing.scarcity_horizon_h is not None and pricing.long_scarcity is not None:
        # scarcity, like a forecast, is known for now: the run hours past the horizon strand
        # GPUs at the fleet's long-run scarcity (:mod:`scheduler.costs.scarcity`)
        horizon_h = pricing.scarcity_horizon_h
        tracker = pricing.long_scarcity  # fed only with the fleet's own scarcity
        fleet = ctx.fleet_share is not None
        far_s = tracker.observe(ctx.now_s, scarcity) if fleet else tracker.peek(scarcity)
        far_h = run_h - np.minimum(run_h, horizon_h)
        stranded_usd = stranded_usd + stranded * far_h * pricing.stranded_gpu_hour * (
            far_s - scarcity
        )
    cost = carbon_usd + gpu_usd + stranded_usd
    energy_price = energy_usd = None
    if pricing.energy is not None and carbon is not None and "kwh" in carbon.detail:
        kwh = np.nan_to_num(np.asarray(carbon.detail["kwh"], dtype=np.float64), nan=0.0)
        t = ctx.table
        energy_price = pricing.energy.mean_price(t.zones, t.zone, ctx.now_s, run_h * 3600.0)
        energy_usd = kwh * energy_price
        cost = cost + energy_usd
    return CostBreakdown(
        share,
        scarcity,
        gpu_price,
        stranded_price,
        gpu_hours,
        stranded,
        carbon_usd,
        gpu_usd,
        stranded_usd,
        cost,
        energy_price,
        energy_usd,
        fill,
        horizon_h,
        far_s,
    )


@dataclass(slots=True)
class Evaluation:
    """The outcome of scoring one pod over its candidate rows."""

    feasible: np.ndarray  # bool [N]
    # (rows still feasible before the term, the term's reasons), in filter order
    reason_parts: list[tuple[np.ndarray, Mapping[int, str]]]
    terms: dict[str, TermScore]
    combined: np.ndarray  # float [N], NaN where infeasible: level + gpu_fit order / 10
    levels: np.ndarray  # int64 [N], 0 where infeasible
    notes: list[str] = field(default_factory=list)
    cost: CostBreakdown | None = None  # the cost arithmetic (None when not scored)
    _reasons: dict[int, str] | None = None

    @property
    def reasons(self) -> dict[int, str]:
        """Why each infeasible row failed: the first failing filter's reason (built on first
        read; prioritize never reads it, filter's FailedNodes does)."""
        if self._reasons is None:
            reasons: dict[int, str] = {}
            for before, lazy in self.reason_parts:
                why = lazy.plain() if isinstance(lazy, LazyReasons) else lazy
                rows = np.fromiter(why.keys(), dtype=np.intp, count=len(why))
                first = rows[before[rows]].tolist()
                reasons.update(zip(first, map(why.__getitem__, first), strict=True))
            self._reasons = reasons
        return self._reasons

    def best(self) -> int | None:
        """Row of the best feasible node (highest combined score), or None."""
        if not self.feasible.any():
            return None
        return int(np.nanargmax(self.combined))


def evaluate(
    ctx: Context, steps: Sequence[Step], *, score: bool = True, pricing: Pricing | None = None
) -> Evaluation:
    """Run every step's filter, then (if ``score``) score the feasible rows and price them.

    The levels follow each node's cost (:func:`price`, with ``pricing`` or the default prices;
    :func:`~scheduler.quantize.quantize_cost`), with the one-level FGD nudge among the nodes at 10
    (:func:`~scheduler.quantize.nudge_top`); ``combined`` is the level plus the gpu_fit preference
    / 10, the stable order among equal levels. The scarcity reads ``ctx.fleet_share`` when the
    caller knows the fleet."""
    pricing = pricing if pricing is not None else Pricing()
    n = len(ctx.table)
    share = allocated_share(ctx)
    feasible = np.ones(n, dtype=bool)
    parts: list[tuple[np.ndarray, Mapping[int, str]]] = []
    for step in steps:
        ctx.feasible = feasible  # rows that passed the filters so far (read-only for terms)
        mask, why = step.term.filter(ctx, step.args)
        if mask is None:
            continue
        if isinstance(why, LazyReasons) or why:  # merged on first read of Evaluation.reasons
            parts.append((feasible.copy(), why))
        feasible &= mask
    scores: dict[str, TermScore] = {}
    combined = np.full(n, np.nan, dtype=np.float64)
    levels = np.zeros(n, dtype=np.int64)
    if not (score and feasible.any()):
        return Evaluation(feasible, parts, scores, combined, levels, list(ctx.pod.notes))
    rows = None if feasible.all() else np.flatnonzero(feasible)
    sub = ctx if rows is None else _restrict(ctx, rows)
    sub_scores: dict[str, TermScore] = {}
    for t, args, scored in steps:
        if not scored:
            continue  # a filter only: its score is never read
        ts = t.score(sub, args)
        sub_scores[t.name] = ts
        scores[t.name] = ts if rows is None else _expand(ts, rows, n)
    breakdown = price(sub, sub_scores, pricing, share)
    lv = quantize_cost(breakdown.cost, pricing.indifference, pricing.full_scale)
    fit = sub_scores.get("gpu_fit")
    order = np.zeros(len(lv)) if fit is None else np.nan_to_num(fit.normalized, nan=0.0)
    lv = nudge_top(lv, order)
    combined[feasible] = lv + 0.1 * order
    levels[feasible] = lv
    cost = _expand_cost(breakdown, rows, n)
    return Evaluation(feasible, parts, scores, combined, levels, list(ctx.pod.notes), cost)


def _expand_cost(b: CostBreakdown, rows: np.ndarray | None, n: int) -> CostBreakdown:
    """``b`` over the feasible ``rows`` spread back over all ``n`` rows (NaN elsewhere)."""
    if rows is None:
        return b

    def spread(v: np.ndarray) -> np.ndarray:
        out = np.full(n, np.nan)
        out[rows] = v
        return out

    return CostBreakdown(
        b.allocated_share,
        b.scarcity,
        b.gpu_hour_price,
        b.stranded_hour_price,
        spread(b.gpu_hours),
        spread(b.stranded_gpus),
        spread(b.carbon_usd),
        spread(b.gpu_usd),
        spread(b.stranded_usd),
        spread(b.cost),
        None if b.energy_price is None else spread(b.energy_price),
        None if b.energy_usd is None else spread(b.energy_usd),
        None if b.fill_gpus is None else spread(b.fill_gpus),
        b.scarcity_horizon_h,
        b.long_run_scarcity,
    )


def _restrict(ctx: Context, rows: np.ndarray) -> Context:
    """Score only the feasible rows so normalisation spans the real choices."""
    return Context(
        pod=ctx.pod,
        table=ctx.table.take(rows),
        carbon=ctx.carbon,
        power=ctx.power,
        now_s=ctx.now_s,
        duration_s=ctx.duration_s,
        klass=ctx.klass,
        signal=ctx.signal,
        feasible=None,  # the filters are done; every row of the restricted table passed them
        fleet_share=ctx.fleet_share,
    )


def _expand(ts: TermScore, rows: np.ndarray, n: int) -> TermScore:
    """``ts`` over the feasible ``rows`` spread back over all ``n`` rows (NaN / -1 elsewhere)."""
    raw = np.full(n, np.nan)
    norm = np.full(n, np.nan)
    raw[rows] = ts.raw
    norm[rows] = ts.normalized
    detail = {}
    for key, value in ts.detail.items():
        if value.shape[:1] == rows.shape:
            expanded = np.full((n, *value.shape[1:]), np.nan if value.dtype.kind == "f" else -1)
            expanded[rows] = value
            detail[key] = expanded
        else:
            detail[key] = value
    return TermScore(raw, norm, ts.unit, detail, ts.carbon_data)
