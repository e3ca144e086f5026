"""The terms of the one registry, the same in every process whatever was imported; which of them
run is derived (v2 has no class weights)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from carbon.testing import FixedView
from scheduler.demand import PodDemand
from scheduler.engine import COST_TERMS, Engine
from scheduler.policy.model import Policy, WorkloadClass
from scheduler.policy.validate import load_policy
from scheduler.sim.baselines import Baseline, BaselineEngine
from scheduler.terms import REGISTRY
from scheduler.terms.least_allocated import LeastAllocated
from tests.support.policy import node_table


def test_a_fresh_process_accepts_least_allocated_without_importing_the_simulator() -> None:
    """It used to be registered only when the simulator was imported: the same name was
    rejected by ``lowcarb policy validate`` and accepted by ``lowcarb simulate``."""
    code = textwrap.dedent(
        """
        import sys
        from scheduler.engine import COST_TERMS, Engine
        from scheduler.policy.model import Policy
        engine = Engine(Policy(), scored=(*COST_TERMS, "least_allocated"))
        assert "least_allocated" in engine.terms
        assert not [m for m in sys.modules if m.startswith("scheduler.sim")], "sim imported"
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_which_terms_run_is_derived_the_same_for_every_class() -> None:
    """The cost terms are scored, the always-filter ones filter, whatever the class says; the
    filter-only terms run last; a class can no longer name terms."""
    policy = load_policy(None)
    engine = Engine(policy)
    for name in policy.classes:
        steps = engine.plans[name]
        assert [s.term.name for s in steps if s.scored] == list(COST_TERMS)
        filters = [s.term.name for s in steps if not s.scored]
        assert filters == [
            n for n, k in REGISTRY.items() if k.always_filter and n not in COST_TERMS
        ]
        assert all(REGISTRY[n].filter_only for n in filters[-1:])
    with pytest.raises(ValidationError, match="weights"):
        WorkloadClass.model_validate({"weights": {"carbon": 1.0}})


def test_every_terms_args_is_part_of_a_workload_class() -> None:
    """A class is handed to each term as that term's settings, so it must be one."""
    cls = WorkloadClass()
    for name, kind in REGISTRY.items():
        assert isinstance(cls, kind.Args), f"{name}: add {kind.Args.__name__} to WorkloadClass"
        assert set(kind.Args.model_fields) <= set(WorkloadClass.model_fields)


def test_the_simulators_least_allocated_gets_the_allocatable_it_is_given() -> None:
    """An instance passed to the engine is the one its plans run (a later swap would not be)."""
    policy = Policy()
    table = node_table(
        [
            ("big", "SE", "r", "NVIDIA-A100-SXM4-80GB", 8),
            ("small", "SE", "r", "NVIDIA-A100-SXM4-80GB", 8),
        ]
    )
    # the same free CPU and memory on both; "big" has twice the allocatable: half of it is in use
    free_cpu, free_mem = int(table.cpu_free[0]), int(table.mem_free[0])
    capacity = {"big": (2 * free_cpu, 2 * free_mem), "small": (free_cpu, free_mem)}
    baseline = Baseline(policy, "least_allocated")
    engine = BaselineEngine(baseline, terms={"least_allocated": LeastAllocated(capacity=capacity)})
    pod = PodDemand(uid="u", namespace="n", name="p", cpu_milli=8000, mem_bytes=2**34)
    ev = engine.evaluate(pod, table, FixedView({"SE": 20.0}), 0.0)
    raw = ev.terms["least_allocated"].raw
    assert raw[0] < raw[1]  # "small" is emptier relative to its allocatable: LeastAllocated wins
    assert table.names[ev.best() or 0] == "small"
