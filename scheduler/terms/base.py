"""The scoring-term seam: ``filter`` gives a mask and reasons, ``score`` a value per node.

A term sees one :class:`Context` per scheduling cycle (the pod's demand, the candidate rows of the
node table, the workload class, a carbon snapshot) and must not do I/O. Scores are returned raw (in
the term's unit, e.g. gCO2e) and normalised to [0, 1] over the candidates, higher is better;
:mod:`scheduler.scoring` weights and combines them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from carbon.energy import PowerModel
from carbon.types import CarbonView
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand


@dataclass(slots=True)
class Context:
    """Everything a term may read for one pod over its candidate nodes."""

    pod: PodDemand
    table: NodeTable
    carbon: CarbonView
    power: PowerModel
    now_s: float
    duration_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TermScore:
    """A term's values over the candidates: raw in ``unit``, normalised to [0, 1], higher better."""

    raw: np.ndarray
    normalized: np.ndarray
    unit: str
    detail: dict[str, Any] = field(default_factory=dict)


class Term(ABC):
    """One scoring term. Instances live as long as the policy and may learn (``observe``)."""

    name: ClassVar[str] = ""

    def filter(self, ctx: Context) -> tuple[np.ndarray | None, dict[int, str]]:
        """Feasibility mask over ``ctx.table`` rows (None: all feasible) and reasons by row."""
        return None, {}

    @abstractmethod
    def score(self, ctx: Context) -> TermScore:
        """Scores over ``ctx.table`` rows (all rows; infeasible rows are ignored by the caller)."""

    def observe(self, pod: PodDemand) -> None:  # noqa: B027  (optional hook)
        """See a pod that is being scheduled (for terms that learn the workload)."""


REGISTRY: dict[str, type[Term]] = {}
T = TypeVar("T", bound=type[Term])


def term(name: str) -> Callable[[T], T]:
    """Class decorator registering a term under ``name``."""

    def register(cls: T) -> T:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"scoring term {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return register


def get_term(name: str) -> type[Term]:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown scoring term {name!r}; known terms: {known}") from None


def lower_is_better(raw: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise so the lowest raw value (among ``mask``) scores 1 and the highest 0."""
    return _minmax(-raw.astype(np.float64), mask)


def higher_is_better(raw: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    return _minmax(raw.astype(np.float64), mask)


def _minmax(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float64)
    sel = np.isfinite(values) if mask is None else (mask & np.isfinite(values))
    if not sel.any():
        return out
    lo = values[sel].min()
    hi = values[sel].max()
    span = hi - lo
    if span <= 1e-12 * max(abs(hi), abs(lo), 1.0):
        out[sel] = 1.0
    else:
        out[sel] = (values[sel] - lo) / span
    return out
