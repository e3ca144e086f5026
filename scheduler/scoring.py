"""Combine the terms into one decision per pod: feasibility, weighted score, extender level 0..10.

A class's evaluation is a list of :class:`Step` s (a term, its per-class ``args``, its weight, and
whether it is scored at all); the engine builds one per class. Every step's filter runs in order
(each sees the rows the earlier ones left in ``Context.feasible``); then each scored term's
normalised score (higher better, over the feasible candidates) is weighted and summed; the sum is
mapped to kube-scheduler's integer 0..10 by :func:`scheduler.quantize.quantize` (the best node
always gets 10; distinct values stay distinct as far as 11 levels allow). The :class:`Evaluation`
keeps every term's raw and normalised values: ``/explain``, the ledger and the simulator read the
same object the extender answers from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from scheduler.cluster.table import LazyReasons, NodeTable
from scheduler.quantize import nudge_top, quantize, quantize_cost
from scheduler.terms.base import Context, Term, TermArgs, TermScore
from scheduler.terms.carbon import gpu_share


class Step(NamedTuple):
    """One term's part in evaluating a class: its filter always runs; when ``scored``, its score
    is computed and weighted by ``weight`` (a weight of 0 is scored but adds nothing)."""

    term: Term[Any]
    weight: float
    args: TermArgs  # the term's ``Args`` for this class
    scored: bool = True


@dataclass(frozen=True, slots=True)
class Pricing:
    """The policy's ``prices`` as plain floats (read per cycle; no pydantic in the loop)."""

    carbon_per_tonne: float = 190.0
    gpu_hour_idle: float = 0.01
    gpu_hour_busy: float = 4.10
    stranded_gpu_hour: float = 4.10
    scarcity_exponent: float = 2.0
    indifference: float = 0.02
    full_scale: float = 1.0


@dataclass(slots=True)
class CostBreakdown:
    """Each node's cost arithmetic (USD; NaN where infeasible) and the fleet's scarcity."""

    allocated_share: float
    scarcity: float
    gpu_hour_price: float
    stranded_hour_price: float
    gpu_hours: np.ndarray  # GPUs x run hours on the node's model
    stranded_gpus: np.ndarray  # FGD fragmentation delta beyond the candidates' least, GPUs
    carbon_usd: np.ndarray
    gpu_usd: np.ndarray
    stranded_usd: np.ndarray
    cost: np.ndarray


def allocated_share(ctx: Context) -> float:
    """Allocated share of the fleet's GPUs: ``ctx.fleet_share`` when the caller knows the whole
    fleet, else the candidate table's (which reads low under load: kube-scheduler sends the
    nodes where the pod still fits, so the full ones are missing)."""
    if ctx.fleet_share is not None:
        return float(min(max(ctx.fleet_share, 0.0), 1.0))
    return table_share(ctx.table)


def table_share(t: NodeTable) -> float:
    """Allocated share of ``t``'s GPUs (0 when it has none)."""
    total = float(np.asarray(t.gpu_total, dtype=np.float64).sum())
    if total <= 0.0:
        return 0.0
    free = float(np.clip(np.asarray(t.gpu_free, dtype=np.float64), 0, None).sum()) / 1000.0
    return float(min(max(1.0 - free / total, 0.0), 1.0))


def price(
    ctx: Context, scores: Mapping[str, TermScore], pricing: Pricing, share: float
) -> CostBreakdown:
    """Cost per row of ``ctx.table`` from the carbon and gpu_fit terms' physical quantities."""
    n = len(ctx.table)
    scarcity = share**pricing.scarcity_exponent
    gpu_price = pricing.gpu_hour_idle + (pricing.gpu_hour_busy - pricing.gpu_hour_idle) * scarcity
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
    if fit is not None and fit.unit == "fragmented GPUs added":
        stranded = np.nan_to_num(np.asarray(fit.raw, dtype=np.float64), nan=0.0)
        if n:  # beyond the least any candidate strands: filling a fragment (a negative delta)
            # earns no credit that grows with a slow GPU's longer run, and costs stay >= 0
            stranded = stranded - float(stranded.min())
    carbon_usd = np.nan_to_num(grams, nan=0.0) / 1e6 * pricing.carbon_per_tonne
    gpu_usd = gpu_hours * gpu_price
    stranded_usd = stranded * run_h * stranded_price
    cost = carbon_usd + gpu_usd + stranded_usd
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
    )


@dataclass(slots=True)
class Evaluation:
    """The outcome of scoring one pod over its candidate rows."""

    feasible: np.ndarray  # bool [N]
    # (rows still feasible before the term, the term's reasons), in filter order
    reason_parts: list[tuple[np.ndarray, Mapping[int, str]]]
    terms: dict[str, TermScore]
    weights: dict[str, float]
    combined: np.ndarray  # float [N], NaN where infeasible
    levels: np.ndarray  # int64 [N], 0 where infeasible
    notes: list[str] = field(default_factory=list)
    cost: CostBreakdown | None = None  # with a policy's ``prices``: the cost arithmetic
    _reasons: dict[int, str] | None = None

    @property
    def reasons(self) -> dict[int, str]:
        """Why each infeasible row failed: the first failing filter's reason (built on first
        read; prioritize never reads it, filter's FailedNodes does)."""
        if self._reasons is None:
            reasons: dict[int, str] = {}
            for before, why in self.reason_parts:
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
    """Run every step's filter, then (if ``score``) score and combine over the feasible rows.

    With ``pricing``: the levels follow each node's cost (:func:`price`,
    :func:`~scheduler.quantize.quantize_cost`), with the one-level FGD nudge among the nodes at
    10 (:func:`~scheduler.quantize.nudge_top`), and ``combined`` is the level plus the gpu_fit
    preference / 10 (the stable order among equal levels), instead of the weighted sum. The
    scarcity reads ``ctx.fleet_share`` when the caller knows the fleet."""
    n = len(ctx.table)
    share = allocated_share(ctx) if pricing is not None else 0.0
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
    weights = {s.term.name: s.weight for s in steps if s.scored}
    combined = np.full(n, np.nan, dtype=np.float64)
    levels = np.zeros(n, dtype=np.int64)
    if score and feasible.any():
        rows = None if feasible.all() else np.flatnonzero(feasible)
        sub = ctx if rows is None else _restrict(ctx, rows)
        total = np.zeros(len(sub.table), dtype=np.float64)  # over the feasible rows only
        weight_sum = 0.0
        for t, w, args, scored in steps:
            if not scored:
                continue  # a filter the class does not weight: its score is never read
            ts = t.score(sub, args)
            scores[t.name] = ts if rows is None else _expand(ts, rows, n)
            if w > 0:
                norm = np.asarray(ts.normalized)
                if not np.isfinite(norm).all():  # (nan_to_num is slow; most terms have none)
                    norm = np.nan_to_num(norm, nan=0.0)
                total += w * norm
                weight_sum += w
        if pricing is not None:
            sub_scores = {
                name: ts if rows is None else _restricted(ts, rows) for name, ts in scores.items()
            }
            breakdown = price(sub, sub_scores, pricing, share)
            lv = quantize_cost(breakdown.cost, pricing.indifference, pricing.full_scale)
            fit = sub_scores.get("gpu_fit")
            order = np.zeros(len(lv)) if fit is None else np.nan_to_num(fit.normalized, nan=0.0)
            lv = nudge_top(lv, order)
            combined[feasible] = lv + 0.1 * order
            levels[feasible] = lv
            cost = _expand_cost(breakdown, rows, n)
            return Evaluation(
                feasible, parts, scores, weights, combined, levels, list(ctx.pod.notes), cost
            )
        total = total / weight_sum if weight_sum > 0 else np.ones(len(total))
        combined[feasible] = total
        levels[feasible] = quantize(total)
    return Evaluation(feasible, parts, scores, weights, combined, levels, list(ctx.pod.notes))


def _restricted(ts: TermScore, rows: np.ndarray) -> TermScore:
    """``ts`` (over all rows) back on the feasible ``rows`` only."""
    detail = {k: v[rows] if v.shape[:1] == (ts.raw.shape[0],) else v for k, v in ts.detail.items()}
    return TermScore(ts.raw[rows], ts.normalized[rows], ts.unit, detail, ts.carbon_data)


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
