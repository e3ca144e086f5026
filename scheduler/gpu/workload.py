"""The expected workload for FGD, learned from recently seen pods ("typical pods").

Pods are reduced to task shapes (CPU, GPUs, milli per GPU, allowed GPU models). The typical set is
the most popular shapes that together cover ``popularity`` (default 95 %) of the pods in the
window, renormalised to sum to 1 (the FGD paper's protocol). The window holds the last
``window_pods`` pods and, when ``window_s`` is set, only pods seen in the last ``window_s``
seconds. The typical set is recomputed lazily, at most every ``refresh_every`` observations, so
observing stays O(1) on the hot path; ``basis`` is how many pods the set in use was computed from
(0: the prior, before any pod was seen), which ``/explain`` reports after :meth:`refresh`
(bringing the set up to date with every pod seen, off the hot path).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from scheduler.demand import PodDemand
from scheduler.gpu.fragmentation import DEFAULT_WORKLOAD, TaskShape, Workload


def shape_of(demand: PodDemand) -> TaskShape:
    """The task shape of a pod demand (MIG-only pods count as CPU pods for GPU fragmentation)."""
    milli = demand.gpu_milli if demand.gpus else 0
    return TaskShape(demand.cpu_milli, demand.gpus, milli, tuple(demand.models))


def typical_workload(shapes: Iterable[TaskShape], popularity: float = 0.95) -> Workload:
    """Most popular shapes covering ``popularity`` of ``shapes``, weights renormalised to 1.

    Ties in popularity are broken by shape (deterministic). Empty input gives the default workload.
    """
    if not 0 < popularity <= 1:
        raise ValueError(f"popularity must be in (0, 1], got {popularity}")
    counts = Counter(shapes)
    total = sum(counts.values())
    if total == 0:
        return DEFAULT_WORKLOAD
    ranked = sorted(
        counts.items(),
        key=lambda kv: (-kv[1], kv[0].gpus, kv[0].milli, kv[0].cpu_milli, kv[0].models),
    )
    chosen: list[tuple[TaskShape, int]] = []
    covered = 0
    for shape, count in ranked:
        if covered >= popularity * total:
            break
        chosen.append((shape, count))
        covered += count
    return Workload(
        shapes=tuple(s for s, _ in chosen), weights=tuple(c / covered for _, c in chosen)
    )


class WorkloadLearner:
    """Typical task shapes of the pods seen recently (count and optional time window)."""

    def __init__(
        self,
        window_pods: int = 5000,
        window_s: float | None = None,
        popularity: float = 0.95,
        refresh_every: int = 50,
        prior: Workload | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_pods < 1:
            raise ValueError(f"window_pods must be >= 1, got {window_pods}")
        if window_s is not None and window_s <= 0:
            raise ValueError(f"window_s must be > 0 when set, got {window_s}")
        if not 0 < popularity <= 1:
            raise ValueError(f"popularity must be in (0, 1], got {popularity}")
        self.window_pods = window_pods
        self.window_s = window_s
        self.popularity = popularity
        self.refresh_every = max(1, refresh_every)
        self.prior = prior or DEFAULT_WORKLOAD
        self._clock = clock
        self._seen: deque[tuple[float, TaskShape]] = deque()
        self._counts: Counter[TaskShape] = Counter()
        self._cached: Workload | None = None
        self._since = 0
        self.version = 0
        self.basis = 0  # pods the workload in use was computed from (0: the prior)

    def __len__(self) -> int:
        return len(self._seen)

    def reconfigured(
        self, window_pods: int, window_s: float | None, popularity: float
    ) -> WorkloadLearner:
        """A learner with new settings that keeps the pods seen so far (within the new window)."""
        out = WorkloadLearner(
            window_pods=window_pods,
            window_s=window_s,
            popularity=popularity,
            refresh_every=self.refresh_every,
            prior=self.prior,
            clock=self._clock,
        )
        for t, shape in self._seen:
            out.observe(shape, now=t)
        return out

    def observe(self, shape: TaskShape | PodDemand, now: float | None = None) -> None:
        """Record one pod (or shape) as seen now."""
        task = shape if isinstance(shape, TaskShape) else shape_of(shape)
        t = self._clock() if now is None else now
        self._seen.append((t, task))
        self._counts[task] += 1
        while len(self._seen) > self.window_pods:
            self._drop()
        self._expire(t)
        self._since += 1
        if self._since >= self.refresh_every or self._cached is self.prior:
            self._cached = None

    def _drop(self) -> None:
        _, old = self._seen.popleft()
        self._counts[old] -= 1
        if self._counts[old] <= 0:
            del self._counts[old]

    def _expire(self, now: float) -> None:
        if self.window_s is None:
            return
        horizon = now - self.window_s
        while self._seen and self._seen[0][0] < horizon:
            self._drop()
            self._cached = None

    def refresh(self) -> Workload:
        """The typical workload recomputed now if any pod was seen since it last was."""
        if self._since:
            self._cached = None
        return self.workload()

    def workload(self) -> Workload:
        """The current typical workload (the prior until a pod has been seen)."""
        if self.window_s is not None:
            self._expire(self._clock())  # drops the cache when pods leave the window
        if self._cached is None:
            if self._counts:
                self._cached = typical_workload(self._counts.elements(), self.popularity)
            else:
                self._cached = self.prior
            self.basis = len(self._seen)
            self._since = 0
            self.version += 1
        return self._cached
