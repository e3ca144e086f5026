"""Simulation-only term: kube-scheduler's default NodeResourcesFit ``LeastAllocated`` score.

Score = mean over CPU and memory of (allocatable - requested after placement) / allocatable, the
default profile's strategy (resources cpu and memory, weight 1 each; extended resources such as
``nvidia.com/gpu`` are not scored by default). It is the carbon-blind ``k8s-default`` baseline of
the placement simulator, which passes each node's allocatable; without it the fleet's largest
free amounts stand in. Not imported by :mod:`scheduler.terms`: registered when the simulator
imports it, so serving policies cannot name it by accident.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scheduler.terms.base import Context, Term, TermScore, higher_is_better, term


@term("least_allocated")
class LeastAllocated(Term):
    """LeastAllocated over CPU and memory; ``capacity`` maps node name -> (milli-CPU, bytes)."""

    def __init__(self, capacity: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.capacity = dict(capacity or {})

    def score(self, ctx: Context) -> TermScore:
        t, pod = ctx.table, ctx.pod
        n = len(t)
        if n == 0:
            empty = np.zeros(0, dtype=np.float64)
            return TermScore(raw=empty, normalized=empty, unit="free share after")
        if self.capacity:
            cap = np.array([self.capacity.get(name, (0, 0)) for name in t.names], dtype=np.float64)
            cpu_cap, mem_cap = cap[:, 0], cap[:, 1]
        else:
            cpu_cap = np.full(n, float(max(t.cpu_free.max(), 1)))
            mem_cap = np.full(n, float(max(t.mem_free.max(), 1)))
        cpu_left = (t.cpu_free - pod.cpu_milli) / np.maximum(cpu_cap, 1.0)
        mem_left = (t.mem_free - pod.mem_bytes) / np.maximum(mem_cap, 1.0)
        raw = np.asarray(0.5 * (cpu_left + mem_left), dtype=np.float64)
        return TermScore(raw=raw, normalized=higher_is_better(raw), unit="free share after")
