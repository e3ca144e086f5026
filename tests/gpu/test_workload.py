"""Typical pods (FGD's expected workload) and the windowed learner."""

from __future__ import annotations

import pytest

from scheduler.demand import PodDemand
from scheduler.gpu.fragmentation import DEFAULT_WORKLOAD, TaskShape
from scheduler.gpu.workload import WorkloadLearner, shape_of, typical_workload

A = TaskShape(12_000, 1, 1000)
B = TaskShape(4_000, 1, 300)
C = TaskShape(0, 0, 0)
D = TaskShape(64_000, 8, 1000)


def test_popular_shapes_up_to_the_threshold_renormalised() -> None:
    shapes = [A] * 60 + [B] * 30 + [C] * 7 + [D] * 3
    wl = typical_workload(shapes, 0.95)
    assert wl.shapes == (A, B, C)  # 60 + 30 < 95, + 7 reaches 97
    assert wl.weights == pytest.approx((60 / 97, 30 / 97, 7 / 97))
    assert typical_workload(shapes, 1.0).shapes == (A, B, C, D)


def test_empty_input_gives_the_default_and_bad_threshold_is_named() -> None:
    assert typical_workload([], 0.95) is DEFAULT_WORKLOAD
    with pytest.raises(ValueError, match="popularity"):
        typical_workload([A], 0)


def test_shape_of_a_pod_demand() -> None:
    d = PodDemand(uid="u", namespace="n", name="p", gpus=1, gpu_milli=300, cpu_milli=4000)
    d.models = ("T4",)
    assert shape_of(d) == TaskShape(4000, 1, 300, ("T4",))
    cpu_only = PodDemand(uid="u", namespace="n", name="p", cpu_milli=2000)
    assert shape_of(cpu_only) == TaskShape(2000, 0, 0)


def test_learner_uses_the_prior_until_it_has_seen_pods() -> None:
    learner = WorkloadLearner(refresh_every=100)
    assert learner.workload() is DEFAULT_WORKLOAD
    learner.observe(B)
    assert learner.workload().shapes == (B,)  # the prior is dropped on the first pod


def test_count_window_forgets_old_pods() -> None:
    learner = WorkloadLearner(window_pods=10, refresh_every=1, popularity=1.0)
    for _ in range(10):
        learner.observe(A)
    for _ in range(10):
        learner.observe(B)
    assert len(learner) == 10
    assert learner.workload().shapes == (B,)


def test_time_window_forgets_old_pods() -> None:
    now = [0.0]
    learner = WorkloadLearner(window_s=60, refresh_every=1, popularity=1.0, clock=lambda: now[0])
    learner.observe(A, now=0.0)
    learner.observe(B, now=50.0)
    now[0] = 100.0
    assert learner.workload().shapes == (B,)
    now[0] = 200.0
    assert learner.workload() is DEFAULT_WORKLOAD


def test_refresh_is_lazy() -> None:
    learner = WorkloadLearner(refresh_every=5, popularity=1.0)
    learner.observe(A)
    first = learner.workload()
    for _ in range(4):
        learner.observe(B)
    assert learner.workload() is first  # fewer than refresh_every new pods: cached
    learner.observe(B)
    assert learner.workload().shapes == (B, A)


def test_basis_counts_the_pods_the_workload_in_use_came_from_and_refresh_catches_up() -> None:
    learner = WorkloadLearner(refresh_every=50, popularity=1.0)
    learner.workload()
    assert learner.basis == 0  # the prior
    learner.observe(A)
    assert learner.workload().shapes == (A,) and learner.basis == 1
    for _ in range(3):
        learner.observe(D)
    assert learner.workload().shapes == (A,) and learner.basis == 1  # cached: 3 < 50
    assert learner.refresh().shapes == (D, A) and learner.basis == 4  # explain's view
    assert learner.refresh() is learner.workload()  # nothing new: kept


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_pods": 0}, "window_pods"),
        ({"window_s": -1}, "window_s"),
        ({"popularity": 2}, "popularity"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WorkloadLearner(**kwargs)  # type: ignore[arg-type]


def test_reconfigure_keeps_recent_pods() -> None:
    learner = WorkloadLearner(window_pods=100, refresh_every=1, popularity=1.0)
    for shape in [A] * 5 + [B] * 3:
        learner.observe(shape)
    smaller = learner.reconfigured(window_pods=3, window_s=None, popularity=1.0)
    assert len(smaller) == 3 and smaller.workload().shapes == (B,)
    assert learner.workload().shapes == (A, B)  # the original is untouched
