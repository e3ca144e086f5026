"""The policy's `gpu:` section configures the GPU term's workload learner, and a reload keeps
what it learned."""

from __future__ import annotations

from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.model import Policy
from scheduler.terms.gpu_fit import GpuFit


def gpu_term(engine: Engine) -> GpuFit:
    term = engine.terms["gpu_fit"]
    assert isinstance(term, GpuFit)
    return term


def test_policy_sets_the_learner_window_and_a_reload_keeps_what_was_seen() -> None:
    first = Engine(Policy.model_validate({"gpu": {"windowPods": 100, "popularity": 0.9}}))
    learner = gpu_term(first).learner
    assert (learner.window_pods, learner.window_s, learner.popularity) == (100, None, 0.9)
    for i in range(20):
        first.observe(PodDemand(uid=f"u{i}", namespace="ns", name=f"p{i}", gpus=1, gpu_milli=500))
    seen = gpu_term(first).learner.workload()

    reloaded = Engine(
        Policy.model_validate({"gpu": {"windowPods": 50, "window": "2h", "popularity": 0.9}}),
        previous=first,
    )
    learner = gpu_term(reloaded).learner
    assert (learner.window_pods, learner.window_s) == (50, 7200.0)
    assert gpu_term(reloaded).learner.workload() == seen


def test_invalid_gpu_learning_values_are_rejected() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="popularity"):
        Policy.model_validate({"gpu": {"popularity": 1.5}})
    with pytest.raises(ValidationError, match="windowPods"):
        Policy.model_validate({"gpu": {"windowPods": 0}})
