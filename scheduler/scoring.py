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

from scheduler.cluster.table import LazyReasons
from scheduler.quantize import quantize
from scheduler.terms.base import Context, Term, TermArgs, TermScore


class Step(NamedTuple):
    """One term's part in evaluating a class: its filter always runs; when ``scored``, its score
    is computed and weighted by ``weight`` (a weight of 0 is scored but adds nothing)."""

    term: Term[Any]
    weight: float
    args: TermArgs  # the term's ``Args`` for this class
    scored: bool = True


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


def evaluate(ctx: Context, steps: Sequence[Step], *, score: bool = True) -> Evaluation:
    """Run every step's filter, then (if ``score``) score and combine over the feasible rows."""
    n = len(ctx.table)
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
        total = total / weight_sum if weight_sum > 0 else np.ones(len(total))
        combined[feasible] = total
        levels[feasible] = quantize(total)
    return Evaluation(feasible, parts, scores, weights, combined, levels, list(ctx.pod.notes))


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
