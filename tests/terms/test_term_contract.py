"""Contract tests over the term registry: every term has tests and honours the seam.

Each registered term (``scheduler.terms.REGISTRY``) has a name (its key), a typed ``Args`` model
(its per-class settings, part of a workload class), a filter that gives a mask and a reason for
each rejected row, a score with one raw and one normalised value per row (normalised in [0, 1]
over the feasible rows) and a unit, and does no I/O. A new term fails here until it is added to
``COVERED`` with its test module and example settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.cluster.state import NodeTable
from scheduler.demand import PodDemand
from scheduler.scoring import Step, evaluate
from scheduler.terms import REGISTRY, Context, Term, TermArgs, TermScore
from tests.support.policy import node_table

TESTS = Path(__file__).resolve().parents[1]

# name -> (its tests, settings of a class that makes it work: filter and score something)
COVERED: dict[str, tuple[str, dict[str, Any]]] = {
    "gpu_fit": ("gpu/test_gpu_fit_term.py", {"gpuMode": "bestfit"}),
    "carbon": ("policy/test_policy_emissions.py", {}),
    "least_allocated": ("policy/test_policy_terms.py", {}),
    "constraints": (
        "policy/test_policy_constraints.py",
        {"constraints": {"allowedRegions": ["eu-*"], "maxIntensity": 100}},
    ),
}

ROWS = [
    ("h100-se", "SE-SE3", "eu-north-1", "NVIDIA-H100-80GB-HBM3", 8),
    ("a100-pl", "PL", "eu-central-2", "NVIDIA-A100-SXM4-80GB", 4),
    ("t4-us", "US-MIDA-PJM", "us-east-1", "Tesla-T4", 1),
    ("l4-unknown", "ATLANTIS", "eu-west-9", "NVIDIA-L4", 2),  # a zone no carbon source knows
    ("cpu-nozone", None, "", "", 0),  # no zone, no GPU
]
VIEW = {"SE-SE3": 23.4, "PL": 819.2, "US-MIDA-PJM": 425.3}
PODS = {
    "cpu": PodDemand(uid="c", namespace="n", name="c", cpu_milli=2000, mem_bytes=2**33),
    "gpu": PodDemand(uid="g", namespace="n", name="g", gpus=1, gpu_milli=1000, cpu_milli=8000),
    "shared": PodDemand(uid="s", namespace="n", name="s", gpus=1, gpu_milli=300, cpu_milli=1000),
    "four": PodDemand(uid="f", namespace="n", name="f", gpus=4, gpu_milli=1000, cpu_milli=1000),
}
# what a term may not do while it filters, scores or observes (Python audit events)
IO_EVENTS = {
    "open",
    "os.listdir",
    "os.scandir",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "subprocess.Popen",
    "os.system",
    "sqlite3.connect",
    "import",
}
_guard: list[list[tuple[str, str]]] = []  # the events seen while a guard is on (innermost last)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _guard and event in IO_EVENTS:
        _guard[-1].append((event, repr(args[:1])[:120]))


sys.addaudithook(_audit)  # for the process; inert unless no_io() is on


@contextlib.contextmanager
def no_io() -> Iterator[list[tuple[str, str]]]:
    """Record every file, socket, process and import event inside, in the list it yields."""
    seen: list[tuple[str, str]] = []
    _guard.append(seen)
    try:
        yield seen
    finally:
        _guard.pop()


def names() -> list[str]:
    return sorted(REGISTRY)


def table() -> NodeTable:
    return node_table(ROWS)


def arrays(t: NodeTable) -> dict[str, np.ndarray]:
    """The table's columns (its numpy arrays) by field name."""
    values = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    return {k: v for k, v in values.items() if isinstance(v, np.ndarray)}


def context(pod: PodDemand, t: NodeTable) -> Context:
    return Context(
        pod=dataclasses.replace(pod, notes=[]),  # terms add notes: each call its own copy
        table=t,
        carbon=FixedView(VIEW),
        power=PowerModel(),
        now_s=0.0,
        duration_s=3600.0,
        klass="contract",
    )


def settings(name: str) -> Iterator[TermArgs]:
    """The term's defaults, then the example settings of COVERED."""
    kind = REGISTRY[name]
    yield kind.Args()
    yield kind.Args.model_validate(COVERED[name][1])


@pytest.mark.parametrize("name", names())
def test_every_registered_term_has_tests(name: str) -> None:
    assert name in COVERED, f"term {name!r} has no contract entry (and maybe no tests)"
    assert (TESTS / COVERED[name][0]).is_file()
    assert set(COVERED) == set(REGISTRY)  # no entry for a term that is gone


@pytest.mark.parametrize("name", names())
def test_name_and_attributes(name: str) -> None:
    kind = REGISTRY[name]
    assert issubclass(kind, Term)
    assert kind.name == name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert not kind.filter_only or kind.always_filter  # a filter nothing scores must always run
    kind()  # buildable with no arguments (the engine builds it so)


@pytest.mark.parametrize("name", names())
def test_args_are_a_strict_documented_model(name: str) -> None:
    args = REGISTRY[name].Args
    assert issubclass(args, TermArgs) and issubclass(args, BaseModel)
    defaults = args()
    with pytest.raises(ValidationError):
        args.model_validate({"noSuchSetting": 1})  # unknown keys are refused
    with pytest.raises(ValidationError):
        defaults.__setattr__(next(iter(args.model_fields), "x"), None)  # frozen
    for field, info in args.model_fields.items():  # the policy schema documents every key
        model = info.annotation if isinstance(info.annotation, type) else None
        documented = model is not None and issubclass(model, BaseModel) and model.__doc__
        assert info.description or documented, f"{name}.Args.{field} needs a description"
    assert args.model_validate(COVERED[name][1]) != defaults or not args.model_fields
    args.model_json_schema()


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("pod", sorted(PODS))
def test_filter_gives_a_mask_and_a_reason_for_each_rejected_row(name: str, pod: str) -> None:
    kind = REGISTRY[name]
    t = table()
    n = len(t)
    for args in settings(name):
        ctx = context(PODS[pod], t)
        ctx.feasible = np.ones(n, dtype=bool)
        mask, reasons = kind().filter(ctx, args)
        if mask is None:
            assert not reasons
            continue
        assert mask.shape == (n,) and mask.dtype == np.bool_
        assert sorted(dict(reasons)) == np.flatnonzero(~mask).tolist()
        assert all(isinstance(r, str) and r for r in dict(reasons).values())


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("pod", sorted(PODS))
def test_score_gives_one_value_per_row_in_its_unit(name: str, pod: str) -> None:
    kind = REGISTRY[name]
    t = table()
    n = len(t)
    for args in settings(name):
        ev = evaluate(context(PODS[pod], t), [Step(kind(), args, not kind.filter_only)])
        assert ev.feasible.shape == (n,)
        if kind.filter_only:
            assert name not in ev.terms  # never scored
            continue
        if not ev.feasible.any():
            assert name not in ev.terms
            continue
        ts = ev.terms[name]
        assert isinstance(ts, TermScore) and isinstance(ts.unit, str) and ts.unit
        assert ts.raw.shape == (n,) and ts.normalized.shape == (n,)
        norm = ts.normalized[ev.feasible]
        assert np.all((norm >= 0.0) & (norm <= 1.0)), norm
        assert ev.levels[ev.feasible].max() == 10


@pytest.mark.parametrize("name", names())
def test_an_empty_table(name: str) -> None:
    kind = REGISTRY[name]
    empty = table().take(np.zeros(0, dtype=np.intp))
    for args in settings(name):
        ctx = context(PODS["gpu"], empty)
        mask, _ = kind().filter(ctx, args)
        assert mask is None or mask.shape == (0,)
        ts = kind().score(ctx, args)
        assert ts.raw.shape == (0,) and ts.normalized.shape == (0,)


@pytest.mark.parametrize("name", names())
def test_no_io_and_no_change_to_the_table(name: str) -> None:
    """Per call, nothing is read or written outside memory. The first round runs unguarded:
    numpy imports some modules on first use (``np.unique`` imports ``numpy.ma``), once per
    process; the second round must see no event at all."""
    kind = REGISTRY[name]
    term = kind()
    for guarded in (False, True):
        for pod in PODS.values():
            t = table()
            before = {k: np.copy(v) for k, v in arrays(t).items()}
            for args in settings(name):
                with no_io() as seen:
                    term.observe(pod)
                    ctx = context(pod, t)
                    ctx.feasible = np.ones(len(t), dtype=bool)
                    term.filter(ctx, args)
                    evaluate(context(pod, t), [Step(term, args, not kind.filter_only)])
                assert not guarded or seen == [], f"{name} did I/O: {seen}"
            after = arrays(t)
            assert all(np.array_equal(before[k], after[k]) for k in before), "the table changed"


def test_the_io_guard_sees_io(tmp_path: Path) -> None:
    """The guard above is not vacuous: a file read inside it is seen."""
    (tmp_path / "f").write_text("x")
    with no_io() as seen:
        (tmp_path / "f").read_text()
    assert [e for e, _ in seen] == ["open"]
