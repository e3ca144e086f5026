"""The scoring engine of one policy: its term instances, class choice, and one call to score a pod.

Built once per (re)loaded policy and swapped atomically; the extender service, ``/explain`` and the
trace simulator all call :meth:`Engine.evaluate`, so what is benchmarked is what is served. The
terms come from :data:`scheduler.terms.REGISTRY`; which run is derived, the same for every class
(:data:`COST_TERMS`, the quantities the cost model prices, then the ``always_filter`` /
``filter_only`` terms), with the class itself as every term's ``Args`` (a
:class:`~scheduler.policy.model.WorkloadClass` is built from them); each class gets its plan of
:class:`~scheduler.scoring.Step` s and its :class:`~scheduler.scoring.Pricing` (the class's
``prices`` over the policy's) once per load. :meth:`Engine.classify` picks
the pod's workload class (:mod:`scheduler.policy.classes`) and remembers the pod's expected duration
and any annotation it had to ignore, so the following ``evaluate`` of the same pod (same uid, or
namespace/name) uses them and records the reasons in the decision notes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from carbon.types import CarbonView
from scheduler import wire
from scheduler.cluster.table import NodeTable
from scheduler.costs.energy import compile_energy
from scheduler.costs.fill_order import FillOrder, long_run_means
from scheduler.costs.scarcity import LongRunScarcity
from scheduler.demand import PodDemand
from scheduler.policy.classes import ClassChoice, classify
from scheduler.policy.model import Policy, Prices, WorkloadClass
from scheduler.policy.store import PolicyStore
from scheduler.scoring import Evaluation, Pricing, Step, evaluate
from scheduler.terms import REGISTRY, Context, Term, TermArgs, get_term
from scheduler.terms.gpu_fit import GpuFit

_REMEMBER = 4096
#: the scored terms whose quantities the cost model prices: the GPU term (stranded GPUs and the
#: FGD order among equal levels; nothing for a CPU pod) and the carbon term (gCO2e, run hours, kWh)
COST_TERMS = ("gpu_fit", "carbon")


def term_args(cls: WorkloadClass, kind: type[Term[Any]]) -> TermArgs:
    """The class's settings for terms of ``kind``: the class itself (it is built from every
    term's ``Args``, see :class:`~scheduler.policy.model.WorkloadClass`)."""
    if not isinstance(cls, kind.Args):
        raise TypeError(
            f"term {kind.name!r}: its Args {kind.Args.__name__} is not among the bases of "
            "WorkloadClass (scheduler/policy/model.py); add it there"
        )
    return cls


def plan(
    cls: WorkloadClass, terms: dict[str, Term[Any]], scored: tuple[str, ...] = COST_TERMS
) -> tuple[Step, ...]:
    """The steps of ``cls``: the ``scored`` terms in that order, then the always-filter terms not
    among them (filter only, in registry order), then the filter-only terms, which see what every
    other filter left."""
    steps = [Step(terms[n], term_args(cls, type(terms[n]))) for n in scored]
    rest = [n for n, k in REGISTRY.items() if k.always_filter and n not in scored]
    rest.sort(key=lambda n: REGISTRY[n].filter_only)  # stable: registry order otherwise
    steps += [Step(terms[n], term_args(cls, REGISTRY[n]), scored=False) for n in rest]
    return tuple(steps)


def pricing(
    prices: Prices,
    fill_order: FillOrder | None = None,
    long_scarcity: LongRunScarcity | None = None,
) -> Pricing:
    """The policy model's prices as the plain floats and tables scoring reads per cycle;
    ``fill_order``: the zones' long-run order (None: the fill order is the name order alone);
    ``long_scarcity``: the fleet's long-run scarcity, past ``prices.scarcityHorizon``."""
    horizon = prices.scarcityHorizon
    horizon_h = horizon / 3600.0 if horizon is not None and long_scarcity is not None else None
    return Pricing(
        prices.carbonPerTonne,
        prices.gpuHourIdle,
        prices.gpuHourBusy,
        prices.strandedGpuHour,
        prices.scarcityExponent,
        prices.indifference,
        prices.fullScale,
        compile_energy(prices.energy),
        prices.fillOrderGpus,
        fill_order,
        horizon_h,
        long_scarcity if horizon_h is not None else None,
    )


class Engine:
    """Terms and prices of one policy, ready to score pods."""

    def __init__(
        self,
        policy: Policy,
        *,
        previous: Engine | None = None,
        terms: Mapping[str, Term[Any]] | None = None,
        scored: tuple[str, ...] = COST_TERMS,
    ) -> None:
        """Terms of ``policy``; with ``previous`` (a hot reload), term instances of the same type
        are kept, so what they learned (the GPU term's workload model) survives a policy edit.
        ``terms``: instances to use for those names instead (e.g. the simulator's LeastAllocated
        with each node's allocatable); only for terms the policy uses. ``scored``: the terms to
        score (a simulator baseline adds the one it ranks by, see :mod:`scheduler.sim.baselines`).
        """
        self.policy = policy
        always = [n for n, k in REGISTRY.items() if k.always_filter]
        names = dict.fromkeys([*scored, *always])
        old = {**(previous.terms if previous is not None else {}), **(terms or {})}
        self.terms: dict[str, Term[Any]] = {}
        for name in names:
            kind = get_term(name)
            kept = old.get(name)
            self.terms[name] = kept if type(kept) is kind else kind()
        gpu_fit = self.terms.get("gpu_fit")
        if isinstance(gpu_fit, GpuFit):
            learn = policy.gpu
            gpu_fit.configure(learn.windowPods, learn.window_s, learn.popularity)
        self._choices: OrderedDict[str, ClassChoice] = OrderedDict()
        order = FillOrder(long_run_means(policy.carbon))  # one per policy: zone ranks cached
        # one per engine, kept over a hot reload that keeps the scarcity's exponent (what the
        # fleet's scarcity was stays true)
        same = previous is not None and (
            previous.policy.prices.scarcityExponent == policy.prices.scarcityExponent
        )
        self.long_scarcity: LongRunScarcity = (
            previous.long_scarcity if same and previous is not None else LongRunScarcity()
        )
        self.pricing: dict[str, Pricing] = {
            name: pricing(policy.class_prices(name), order, self.long_scarcity)
            for name in policy.classes
        }
        self.plans: dict[str, tuple[Step, ...]] = {
            name: plan(cls, self.terms, scored) for name, cls in policy.classes.items()
        }

    # --- classes ---------------------------------------------------------------------------

    def choose(self, pod: wire.Pod) -> ClassChoice:
        """Class, expected duration and notes for ``pod`` (remembered for ``evaluate``)."""
        choice = classify(self.policy, pod)
        meta = pod.metadata
        for key in {meta.uid, f"{meta.namespace}/{meta.name}"} - {"", "/"}:
            self._choices[key] = choice
            self._choices.move_to_end(key)
        while len(self._choices) > _REMEMBER:
            self._choices.popitem(last=False)
        return choice

    def classify(self, pod: wire.Pod) -> str:
        """Name of the pod's workload class (see :mod:`scheduler.policy.classes`)."""
        return self.choose(pod).name

    def _choice_for(self, demand: PodDemand, klass: str) -> ClassChoice | None:
        for key in (demand.uid, demand.key):
            choice = self._choices.get(key)
            if choice is not None and choice.name == klass:
                return choice
        return None

    def expected_duration_s(self, demand: PodDemand, klass: str) -> float:
        """The pod's expected run time: its annotation (via :meth:`classify`), else the class's."""
        choice = self._choice_for(demand, klass)
        return (
            choice.duration_s
            if choice is not None
            else self.policy.workload_class(klass).duration_s
        )

    # --- scoring ---------------------------------------------------------------------------

    def observe(self, demand: PodDemand) -> None:
        for t in self.terms.values():
            t.observe(demand)

    def context(
        self,
        demand: PodDemand,
        table: NodeTable,
        carbon: CarbonView,
        now_s: float,
        cls: WorkloadClass,
        *,
        klass: str = "default",
        duration_s: float | None = None,
        fleet_share: float | None = None,
    ) -> Context:
        return Context(
            pod=demand,
            table=table,
            carbon=carbon,
            power=self.policy.power,
            now_s=now_s,
            duration_s=cls.duration_s if duration_s is None else duration_s,
            klass=klass,
            signal=cls.signal,
            fleet_share=fleet_share,
        )

    def evaluate(
        self,
        demand: PodDemand,
        table: NodeTable,
        carbon: CarbonView,
        now_s: float,
        *,
        klass: str = "default",
        score: bool = True,
        duration_s: float | None = None,
        fleet_share: float | None = None,
    ) -> Evaluation:
        """Filter and (if ``score``) score ``demand`` over ``table`` under class ``klass``.

        The expected duration is ``duration_s`` when given (the simulator knows it), else the one
        :meth:`classify` found for this pod (annotation or class default), else the class default.
        ``fleet_share``: allocated share of the whole fleet's GPUs (the priced model's scarcity;
        default: the share of ``table``, the candidates).
        """
        if klass not in self.policy.classes:
            note = f"class {klass!r} is not in the policy; used 'default'"
            if note not in demand.notes:
                demand.notes.append(note)
            klass = "default"
        cls = self.policy.workload_class(klass)
        choice = self._choice_for(demand, klass)
        if choice is not None:
            demand.notes.extend(n for n in choice.notes if n not in demand.notes)
        ctx = self.context(
            demand,
            table,
            carbon,
            now_s,
            cls,
            klass=klass,
            duration_s=duration_s
            if duration_s is not None
            else (choice.duration_s if choice is not None else None),
            fleet_share=fleet_share,
        )
        ev = evaluate(ctx, self.plans[klass], score=score, pricing=self.pricing[klass])
        ev.notes = list(demand.notes)
        return ev

    def gpu_index(self, ev: Evaluation, row: int) -> tuple[int, ...]:
        """GPU slot(s) the GPU term chose for ``row`` (shared GPUs), if it said."""
        ts = ev.terms.get("gpu_fit")
        if ts is None:
            return ()
        chosen = ts.detail.get("gpu_index")
        if chosen is not None and chosen.shape[0] > row and chosen[row] >= 0:
            return (int(chosen[row]),)
        return ()


class EngineStore(PolicyStore[Engine]):
    """The live policy compiled into an :class:`Engine`; each reload keeps the previous engine's
    learned state (see ``Engine(previous=...)``)."""

    def __init__(self, path: Path | str | None = None, *, warn: bool = True) -> None:
        super().__init__(path, lambda policy, old: Engine(policy, previous=old), warn=warn)
