"""The simulator's baselines: a policy's filters and terms, ranked by one term alone.

``k8s-default`` (kube-scheduler's LeastAllocated), ``bestfit`` and ``fgd`` (the GPU term in that
mode) and ``carbon-greedy`` (the carbon term on the current intensity) are not lowcarb policies:
they are what lowcarb is compared with. Each is a :class:`Baseline`, a v2 policy (its GPU mode,
expected duration and power model) plus the one term it ranks by; :class:`BaselineEngine` runs
the serving engine (same filters, same terms, the cost arithmetic too) and then replaces the
levels by that term's normalised score (:func:`rank_by`, kube-scheduler's 0..10 through
:func:`scheduler.quantize.quantize`). The lowcarb policy itself is never ranked this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduler.engine import COST_TERMS, Engine
from scheduler.policy.model import Policy
from scheduler.quantize import quantize
from scheduler.scoring import Evaluation
from scheduler.terms import Term


@dataclass(frozen=True, slots=True)
class Baseline:
    """A comparison policy: ``policy``'s filters and terms, ranked by ``rank_by`` alone."""

    policy: Policy
    rank_by: str


def rank_by(ev: Evaluation, term: str) -> Evaluation:
    """``ev`` with its levels and order from ``term``'s normalised score alone (in place)."""
    ts = ev.terms.get(term)
    if ts is None or not ev.feasible.any():
        return ev
    values = np.nan_to_num(np.asarray(ts.normalized, dtype=np.float64)[ev.feasible], nan=0.0)
    ev.combined[ev.feasible] = values
    ev.levels[ev.feasible] = quantize(values)
    return ev


class BaselineEngine(Engine):
    """The serving engine, ranking by one term (see :class:`Baseline`)."""

    def __init__(self, baseline: Baseline, *, terms: Mapping[str, Term[Any]] | None = None):
        scored = tuple(dict.fromkeys([*COST_TERMS, baseline.rank_by]))
        super().__init__(baseline.policy, terms=terms, scored=scored)
        self.rank_by = baseline.rank_by

    def evaluate(self, *args: Any, **kwargs: Any) -> Evaluation:
        """:meth:`Engine.evaluate`, then the levels re-ranked by the baseline's one term."""
        ev = super().evaluate(*args, **kwargs)
        return rank_by(ev, self.rank_by) if kwargs.get("score", True) else ev
