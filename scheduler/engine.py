"""The scoring engine of one policy: its term instances, class choice, and one call to score a pod.

Built once per (re)loaded policy and swapped atomically; the extender service and the trace
simulator both call :meth:`Engine.evaluate`, so what is benchmarked is what is served.
"""

from __future__ import annotations

import numpy as np

from carbon.types import CarbonView
from scheduler import terms as _terms  # noqa: F401  (registers the built-in terms)
from scheduler import wire
from scheduler.cluster import NodeTable
from scheduler.demand import ANN_CLASS, PodDemand
from scheduler.policy import Policy, WorkloadClass
from scheduler.scoring import Evaluation, evaluate
from scheduler.terms.base import Context, Term, get_term


class Engine:
    """Terms and weights of one policy, ready to score pods."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        names = sorted({name for c in policy.classes for name in c.weights})
        self.terms: dict[str, Term] = {name: get_term(name)() for name in names}

    def classify(self, pod: wire.Pod) -> str:
        wanted = (pod.metadata.annotations or {}).get(ANN_CLASS)
        if wanted and any(c.name == wanted for c in self.policy.classes):
            return wanted
        return "default"

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
    ) -> Context:
        return Context(
            pod=demand,
            table=table,
            carbon=carbon,
            power=self.policy.power,
            now_s=now_s,
            duration_s=cls.duration_s,
            params={"signal": cls.signal, "gpu_mode": cls.gpuMode, "class": cls.name},
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
        cls = self.policy.workload_class(klass)
        ctx = self.context(demand, table, carbon, now_s, cls)
        weighted = [(self.terms[name], w) for name, w in cls.weights.items()]
        return evaluate(ctx, weighted, score=score)

    def gpu_index(self, ev: Evaluation, row: int) -> tuple[int, ...]:
        """GPU slot(s) the GPU term chose for ``row`` (shared GPUs), if it said."""
        ts = ev.terms.get("gpu_fit")
        if ts is None:
            return ()
        chosen = ts.detail.get("gpu_index")
        if isinstance(chosen, np.ndarray) and chosen.shape[0] > row and chosen[row] >= 0:
            return (int(chosen[row]),)
        return ()
