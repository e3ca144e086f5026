"""The scoring engine of one policy: its term instances, class choice, and one call to score a pod.

Built once per (re)loaded policy and swapped atomically; the extender service, ``/explain`` and
the trace simulator all call :meth:`Engine.evaluate`, so what is benchmarked is what is served.
:meth:`Engine.classify` picks the pod's workload class (:mod:`scheduler.classes`) and remembers the
pod's expected duration and any annotation it had to ignore, so the following ``evaluate`` of the
same pod (same uid, or namespace/name) uses them and records the reasons in the decision notes.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from carbon.types import CarbonView
from scheduler import terms as _terms  # noqa: F401  (registers the built-in terms)
from scheduler import wire
from scheduler.classes import ClassChoice, classify
from scheduler.cluster import NodeTable
from scheduler.demand import PodDemand
from scheduler.policy import FILTER_ONLY_TERMS, Policy, WorkloadClass
from scheduler.scoring import Evaluation, evaluate
from scheduler.terms import constraints as _constraints  # noqa: F401  (registers the term)
from scheduler.terms.base import Context, Term, get_term

_REMEMBER = 4096


class Engine:
    """Terms and weights of one policy, ready to score pods."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        names = [*policy.term_names(), *sorted(FILTER_ONLY_TERMS)]
        self.terms: dict[str, Term] = {name: get_term(name)() for name in names}
        self._choices: OrderedDict[str, ClassChoice] = OrderedDict()

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
        """Name of the pod's workload class (see :mod:`scheduler.classes`)."""
        return self.choose(pod).name

    def _choice_for(self, demand: PodDemand, klass: str) -> ClassChoice | None:
        for key in (demand.uid, demand.key):
            choice = self._choices.get(key)
            if choice is not None and choice.name == klass:
                return choice
        return None

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
    ) -> Context:
        return Context(
            pod=demand,
            table=table,
            carbon=carbon,
            power=self.policy.power,
            now_s=now_s,
            duration_s=cls.duration_s if duration_s is None else duration_s,
            params={
                "signal": cls.signal,
                "gpu_mode": cls.gpuMode,
                "class": klass,
                "constraints": cls.constraints,
            },
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
    ) -> Evaluation:
        """Filter and (if ``score``) score ``demand`` over ``table`` under class ``klass``.

        The expected duration is the one :meth:`classify` found for this pod (annotation or
        class default); a pod never classified gets the class default.
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
            duration_s=choice.duration_s if choice is not None else None,
        )
        weighted = [(self.terms[name], w) for name, w in cls.weights.items()]
        weighted.extend((self.terms[name], 0.0) for name in sorted(FILTER_ONLY_TERMS))
        ev = evaluate(ctx, weighted, score=score)
        for name in FILTER_ONLY_TERMS:
            ev.terms.pop(name, None)
            ev.weights.pop(name, None)
        ev.notes = list(demand.notes)
        return ev

    def gpu_index(self, ev: Evaluation, row: int) -> tuple[int, ...]:
        """GPU slot(s) the GPU term chose for ``row`` (shared GPUs), if it said."""
        ts = ev.terms.get("gpu_fit")
        if ts is None:
            return ()
        chosen = ts.detail.get("gpu_index")
        if isinstance(chosen, np.ndarray) and chosen.shape[0] > row and chosen[row] >= 0:
            return (int(chosen[row]),)
        return ()
