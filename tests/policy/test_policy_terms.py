"""Weights name the terms of the one registry, the same in every process, whatever was imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from carbon.testing import FixedView
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.model import Policy, WorkloadClass
from scheduler.terms import REGISTRY
from scheduler.terms.least_allocated import LeastAllocated
from tests.support.policy import node_table


def test_a_fresh_process_accepts_least_allocated_without_importing_the_simulator() -> None:
    """It used to be registered only when the simulator was imported: the same policy was
    rejected by ``lowcarb policy validate`` and accepted by ``lowcarb simulate``."""
    code = textwrap.dedent(
        """
        import sys
        from scheduler.policy.validate import validate_text
        text = "classes: {default: {weights: {least_allocated: 1, gpu_fit: 0}}}"
        policy, issues = validate_text(text, "p.yaml")
        assert policy is not None, [str(i) for i in issues]
        assert not [m for m in sys.modules if m.startswith("scheduler.sim")], "sim imported"
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_registered_term_but_the_filter_only_ones_can_be_weighted() -> None:
    for name, kind in REGISTRY.items():
        if kind.filter_only:
            with pytest.raises(ValidationError, match="unknown term"):
                WorkloadClass.model_validate({"weights": {name: 1.0, "gpu_fit": 1.0}})
        else:
            cls = WorkloadClass.model_validate({"weights": {name: 1.0}})
            assert cls.weights == {name: 1.0}


def test_every_terms_args_is_part_of_a_workload_class() -> None:
    """A class is handed to each term as that term's settings, so it must be one."""
    cls = WorkloadClass()
    for name, kind in REGISTRY.items():
        assert isinstance(cls, kind.Args), f"{name}: add {kind.Args.__name__} to WorkloadClass"
        assert set(kind.Args.model_fields) <= set(WorkloadClass.model_fields)


def test_the_simulators_least_allocated_gets_the_allocatable_it_is_given() -> None:
    """An instance passed to the engine is the one its plans run (a later swap would not be)."""
    policy = Policy.model_validate(
        {"classes": {"default": {"weights": {"least_allocated": 1, "gpu_fit": 0}}}}
    )
    table = node_table(
        [
            ("big", "SE", "r", "NVIDIA-A100-SXM4-80GB", 8),
            ("small", "SE", "r", "NVIDIA-A100-SXM4-80GB", 8),
        ]
    )
    # the same free CPU and memory on both; "big" has twice the allocatable: half of it is in use
    free_cpu, free_mem = int(table.cpu_free[0]), int(table.mem_free[0])
    capacity = {"big": (2 * free_cpu, 2 * free_mem), "small": (free_cpu, free_mem)}
    engine = Engine(policy, terms={"least_allocated": LeastAllocated(capacity=capacity)})
    pod = PodDemand(uid="u", namespace="n", name="p", cpu_milli=8000, mem_bytes=2**34)
    ev = engine.evaluate(pod, table, FixedView({"SE": 20.0}), 0.0)
    raw = ev.terms["least_allocated"].raw
    assert raw[0] < raw[1]  # "small" is emptier relative to its allocatable: LeastAllocated wins
    assert table.names[ev.best() or 0] == "small"
