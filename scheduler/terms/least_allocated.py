"""kube-scheduler's default NodeResourcesFit ``LeastAllocated`` score, as a term.

Score = mean over CPU and memory of (allocatable - requested after placement) / allocatable, the
default profile's strategy (resources cpu and memory, weight 1 each; extended resources such as
``nvidia.com/gpu`` are not scored by default). It is the carbon-blind ``k8s-default`` baseline of
the placement simulator, which passes each node's allocatable (``capacity``). A registered term
like the others, so any policy may weight it (the same in every process, whatever was imported);
the node table carries free amounts, not allocatable, so without ``capacity`` the largest free
amounts among the candidates stand in for it. No per-class settings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scheduler.terms.base import Context, Term, TermArgs, TermScore, higher_is_better


class LeastAllocated(Term[TermArgs]):
    """LeastAllocated over CPU and memory; ``capacity`` maps node name -> (milli-CPU, bytes)."""

    name = "least_allocated"

    def __init__(self, capacity: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.capacity = dict(capacity or {})

    def score(self, ctx: Context, args: TermArgs) -> TermScore:
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
