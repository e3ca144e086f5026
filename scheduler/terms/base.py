"""The scoring-term seam: ``filter`` gives a mask and reasons, ``score`` a value per node.

A term sees one :class:`Context` per scheduling cycle (the pod's demand, the candidate rows of the
node table, the workload class's name and grid signal, a carbon snapshot) and its own typed
per-class settings (its :class:`TermArgs` subclass, ``Term.Args``), and must not do I/O. Scores
are returned raw (in the term's unit, e.g. gCO2e) and normalised to [0, 1] over the candidates,
higher is better; :mod:`scheduler.scoring` weights and combines them. How the engine runs a term
is said by class attributes, not by lists elsewhere: ``always_filter`` (its filter runs for every
class, weighted or not) and ``filter_only`` (no score; cannot be weighted; runs after every other
filter). The registry of terms by name is :data:`scheduler.terms.REGISTRY`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from carbon.energy import PowerModel
from carbon.types import CarbonView, SignalKind
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand


class TermArgs(BaseModel):
    """A term's settings per workload class (none here; each term's ``Args`` adds its own).

    The fields are keys of a workload class in the policy (e.g. ``gpuMode``), with their
    defaults, bounds and descriptions. The policy's ``WorkloadClass`` is built from every term's
    ``Args`` (:mod:`scheduler.policy.model`), so ``lowcarb policy validate`` checks them with
    file:line:column and the JSON schema documents them; a term receives them validated, as its
    own type, never as a dict. Validated once per policy load, only read per cycle.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


A = TypeVar("A", bound=TermArgs)


@dataclass(slots=True)
class Context:
    """Everything a term may read for one pod over its candidate nodes (besides its ``Args``)."""

    pod: PodDemand
    table: NodeTable
    carbon: CarbonView
    power: PowerModel
    now_s: float
    duration_s: float
    klass: str = "default"  # the workload class's name (for reasons and notes)
    signal: SignalKind = "average"  # the grid signal the class reads
    # rows that passed the filters run so far: set by scoring.evaluate before each filter, None
    # outside filtering; a term reads it and never writes it
    feasible: np.ndarray | None = None
    # allocated share of the whole fleet's GPUs (0..1), when the caller knows the fleet (the
    # extender's cluster state, the simulator); None: the priced model uses ``table`` instead
    fleet_share: float | None = None


@dataclass(frozen=True, slots=True)
class ZoneData:
    """The carbon data a term used for one grid zone (``/explain``'s and the ledger's source)."""

    source: str  # the provider that answered
    age_s: float  # age of its value, rounded to 0.1 s
    stale: bool
    g_per_kwh: float  # rounded to 0.1


@dataclass(slots=True)
class TermScore:
    """A term's values over the candidates: raw in ``unit``, normalised to [0, 1], higher better.

    ``detail``: more values per row (the GPU a sharing pod would use, the intensity used), spread
    back over every candidate like ``raw``; ``carbon_data``: by zone, the carbon data used.
    """

    raw: np.ndarray
    normalized: np.ndarray
    unit: str
    detail: dict[str, np.ndarray] = field(default_factory=dict)
    carbon_data: dict[str, ZoneData] = field(default_factory=dict)


class Term(ABC, Generic[A]):
    """One scoring term. Instances live as long as the policy (a reload keeps them) and may learn
    (``observe``); one instance serves every class, each call gets that class's ``args``."""

    #: the name policies weight it by (the key in :data:`scheduler.terms.REGISTRY`)
    name: ClassVar[str] = ""
    #: its per-class settings (fields are workload-class keys); ``TermArgs`` when it has none
    Args: ClassVar[type[TermArgs]] = TermArgs
    #: its filter runs for every class, whether or not the class weights it
    always_filter: ClassVar[bool] = False
    #: it only filters (never weighted, never scored) and runs after every other filter, so
    #: ``ctx.feasible`` is what all the others left; implies ``always_filter``
    filter_only: ClassVar[bool] = False

    def filter(self, ctx: Context, args: A) -> tuple[np.ndarray | None, dict[int, str]]:
        """Feasibility mask over ``ctx.table`` rows (None: all feasible) and reasons by row."""
        return None, {}

    @abstractmethod
    def score(self, ctx: Context, args: A) -> TermScore:
        """Scores over ``ctx.table`` rows (all rows; infeasible rows are ignored by the caller)."""

    def observe(self, pod: PodDemand) -> None:  # optional hook
        """See a pod that is being scheduled (for terms that learn the workload)."""


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
