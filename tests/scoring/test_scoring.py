"""Filtering, pricing the feasible rows, and mapping to kube-scheduler's 0..10 levels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.quantize import quantize
from scheduler.scoring import Step, evaluate
from scheduler.terms.base import Context, Term, TermArgs, TermScore, higher_is_better


def table(n: int) -> NodeTable:
    return NodeTable(
        names=[f"n{i}" for i in range(n)],
        zone=np.zeros(n, dtype=np.int32),
        zones=["Z"],
        region=["r"] * n,
        gpu_model=np.zeros(n, dtype=np.int32),
        models=["NVIDIA-A100-SXM4-80GB"],
        gpu_total=np.full(n, 8, dtype=np.int32),
        gpu_free=np.full((n, 8), 1000, dtype=np.int32),
        gpu_mem_mib=np.full(n, 81920, dtype=np.int32),
        cpu_free=np.full(n, 96000, dtype=np.int64),
        mem_free=np.full(n, 2**40, dtype=np.int64),
        mig_free=np.zeros((n, 0), dtype=np.int32),
        mig_profiles=[],
    )


class Values(Term[TermArgs]):
    """A term that scores rows by fixed values and fails the rows listed in ``bad``."""

    name = "values"

    def __init__(self, values: list[float], bad: tuple[int, ...] = ()) -> None:
        self.values = np.array(values, dtype=np.float64)
        self.bad = bad

    def filter(self, ctx: Context, args: TermArgs) -> tuple[np.ndarray | None, dict[int, str]]:
        mask = np.ones(len(ctx.table), dtype=bool)
        mask[list(self.bad)] = False
        return mask, {i: f"row {i} is bad" for i in self.bad}

    def score(self, ctx: Context, args: TermArgs) -> TermScore:
        rows = [int(name[1:]) for name in ctx.table.names]
        raw = self.values[rows]
        return TermScore(raw=raw, normalized=higher_is_better(raw), unit="x")


class Grams(Values):
    """Stands in for the carbon term: its raw values are what the cost model prices as gCO2e."""

    name = "carbon"


def ctx(n: int) -> Context:
    return Context(
        pod=PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=1000),
        table=table(n),
        carbon=FixedView({"Z": 100.0}),
        power=PowerModel(),
        now_s=0.0,
        duration_s=3600.0,
    )


def test_best_node_alone_gets_ten_and_order_is_kept() -> None:
    values = np.array([0.91, 0.9, 0.2, 0.95, 0.0])
    levels = quantize(values)
    assert levels[3] == 10
    assert (levels == 10).sum() == 1
    order = np.argsort(-values)
    assert all(levels[a] > levels[b] for a, b in itertools.pairwise(order.tolist()))


def test_equal_values_tie_and_only_them() -> None:
    levels = quantize(np.array([0.5, 0.5, 0.4, 0.5 + 1e-15]))
    assert levels.tolist() == [10, 10, 0, 10]  # the worst distinct value maps to 0


def test_more_distinct_values_than_levels_keeps_top_ranks() -> None:
    values = np.linspace(0.0, 1.0, 50)
    levels = quantize(values)
    assert levels[-1] == 10
    assert levels.tolist()[-10:] == list(range(1, 11))
    assert np.all(np.diff(levels) >= 0)


@pytest.mark.parametrize("values", [[], [np.nan, np.nan], [3.0]])
def test_degenerate_inputs(values: list[float]) -> None:
    levels = quantize(np.array(values, dtype=np.float64))
    assert levels.shape == (len(values),)
    assert set(levels.tolist()) <= {0, 10}


def test_evaluate_filters_then_prices_and_reports_reasons() -> None:
    """The filter's reasons are kept; the feasible rows are priced (the cost model reads the
    term called carbon as gCO2e) and the levels follow cost, whatever a term normalises to."""
    a = Values([1.0, 0.0, 0.5, 0.9], bad=(2,))
    grams = Grams([10_000.0, 30_000.0, 1.0, 10_100.0])
    ev = evaluate(ctx(4), [Step(a, TermArgs(), scored=False), Step(grams, TermArgs())])
    assert ev.feasible.tolist() == [True, True, False, True]
    assert ev.reasons == {2: "row 2 is bad"}
    assert "values" not in ev.terms  # a filter only: never scored
    assert ev.cost is not None
    # 1 GPU-hour at the default 0.005 $ + grams x 190 $/t: 1.905, 5.705, -, 1.924 $
    np.testing.assert_allclose(ev.cost.cost[[0, 1, 3]], [1.905, 5.705, 1.924])
    assert np.isnan(ev.cost.cost[2])
    # row 3 is 1 % dearer than row 0 (within the 2 % indifference): both 10; row 1 199 %: 0
    assert ev.levels.tolist() == [10, 0, 0, 10]
    assert ev.best() in (0, 3)
    assert np.isnan(ev.combined[2])


def test_evaluate_without_feasible_nodes() -> None:
    a = Values([1.0, 0.0], bad=(0, 1))
    ev = evaluate(ctx(2), [Step(a, TermArgs())])
    assert not ev.feasible.any()
    assert ev.best() is None
    assert ev.levels.tolist() == [0, 0]
