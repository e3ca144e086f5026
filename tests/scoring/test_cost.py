"""The one-currency model: node cost from physical quantities x prices, and its 0..10 levels."""

from __future__ import annotations

import numpy as np
import pytest

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.engine import pricing
from scheduler.policy.model import Prices
from scheduler.quantize import nudge_top, quantize, quantize_cost
from scheduler.scoring import Pricing, Step, evaluate, price
from scheduler.terms.base import Context, TermArgs, TermScore
from scheduler.terms.carbon import Carbon

MODELS = ["NVIDIA-A100-SXM4-80GB", "Tesla-T4"]


def table(free_per_gpu: int = 1000) -> NodeTable:
    """n0: A100 in Z1 (100 g/kWh), n1: A100 in Z2 (300 g/kWh), n2: T4 in Z1; 8 GPUs each."""
    n = 3
    return NodeTable(
        names=["n0", "n1", "n2"],
        zone=np.array([0, 1, 0], dtype=np.int32),
        zones=["Z1", "Z2"],
        region=["r"] * n,
        gpu_model=np.array([0, 0, 1], dtype=np.int32),
        models=MODELS,
        gpu_total=np.full(n, 8, dtype=np.int32),
        gpu_free=np.full((n, 8), free_per_gpu, dtype=np.int32),
        gpu_mem_mib=np.full(n, 16384, dtype=np.int32),
        cpu_free=np.full(n, 96000, dtype=np.int64),
        mem_free=np.full(n, 2**40, dtype=np.int64),
        mig_free=np.zeros((n, 0), dtype=np.int32),
        mig_profiles=[],
    )


def ctx(t: NodeTable) -> Context:
    return Context(
        pod=PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=1000),
        table=t,
        carbon=FixedView({"Z1": 100.0, "Z2": 300.0}),
        power=PowerModel(),  # A100 320 W speed 1.0, T4 60 W speed 0.2, PUE 1.2
        now_s=0.0,
        duration_s=3600.0,
    )


# GPU time priced by scarcity (the previous default; the shipped one is a flat 0.005 $/h)
SCALED = Pricing(gpu_hour_idle=0.01, gpu_hour_busy=4.10)


def test_the_scoring_defaults_are_the_policy_defaults() -> None:
    """A policy without ``prices`` scores exactly as ``Pricing()`` (what the README documents)."""
    assert pricing(Prices()) == Pricing()


def test_cost_is_quantities_times_prices_computed_by_hand() -> None:
    ev = evaluate(ctx(table()), [Step(Carbon(), TermArgs())], pricing=SCALED)
    assert ev.cost is not None
    # idle fleet: scarcity 0, GPU time at the idle price 0.01 $/h
    assert ev.cost.scarcity == 0.0 and ev.cost.gpu_hour_price == pytest.approx(0.01)
    # gCO2e: A100 0.32 kW x 1.2 x 1 h x 100 / 300 g; T4 0.06 kW x 1.2 x 5 h x 100 g
    np.testing.assert_allclose(ev.terms["carbon"].raw, [38.4, 115.2, 36.0])
    np.testing.assert_allclose(ev.cost.gpu_hours, [1.0, 1.0, 5.0])
    np.testing.assert_allclose(ev.cost.carbon_usd, np.array([38.4, 115.2, 36.0]) * 190e-6)
    cost = np.array([0.01 + 38.4 * 190e-6, 0.01 + 115.2 * 190e-6, 0.05 + 36.0 * 190e-6])
    np.testing.assert_allclose(ev.cost.cost, cost)
    # the slow T4 in the clean zone is not a bargain; the dirty A100 is 84 % dearer: level 2
    assert ev.levels.tolist() == [10, 2, 0]
    assert ev.best() == 0


def test_scarcity_raises_the_gpu_hour_price_with_allocation() -> None:
    t = table()
    t.gpu_free[:, :4] = 0  # half of every node's GPUs allocated
    ev = evaluate(ctx(t), [Step(Carbon(), TermArgs())], pricing=SCALED)
    assert ev.cost is not None
    assert ev.cost.allocated_share == pytest.approx(0.5)
    assert ev.cost.scarcity == pytest.approx(0.25)
    assert ev.cost.gpu_hour_price == pytest.approx(0.01 + (4.10 - 0.01) * 0.25)
    # GPU time now dominates: the two A100s are within 2 % of each other, both score 10
    assert ev.levels.tolist()[:2] == [10, 10] and ev.levels[2] == 0


def test_noise_never_spans_the_range() -> None:
    cost = np.array([100.0, 100.5, 101.0, 101.9])  # all within 2 % of the best
    assert quantize_cost(cost).tolist() == [10, 10, 10, 10]
    assert quantize(-cost).tolist()[-1] < 5  # the old range mapping stretched 1.9 % to levels


def test_cost_levels_fall_linearly_beyond_the_indifference() -> None:
    cost = np.array([1.0, 1.03, 1.25, 1.5, 2.0, 5.0, np.nan])
    assert quantize_cost(cost, 0.02, 1.0).tolist() == [10, 9, 8, 5, 0, 0, 0]
    assert quantize_cost(cost, 0.3, 1.0).tolist() == [10, 10, 10, 5, 0, 0, 0]
    assert quantize_cost(cost, 0.02, 4.0).tolist() == [10, 9, 9, 9, 8, 0, 0]


def test_scarcity_reads_the_fleet_not_the_idle_candidates() -> None:
    """Two zones, two nodes offered: both idle, so their own share is 0; the fleet behind them is
    3/4 allocated (e.g. 24 of 32 GPUs). The price must follow the fleet: s = 0.75^2."""
    c = ctx(table())
    candidates_only = evaluate(c, [Step(Carbon(), TermArgs())], pricing=SCALED)
    assert candidates_only.cost is not None and candidates_only.cost.scarcity == 0.0
    c.fleet_share = 0.75
    ev = evaluate(c, [Step(Carbon(), TermArgs())], pricing=SCALED)
    assert ev.cost is not None
    assert ev.cost.allocated_share == pytest.approx(0.75)
    assert ev.cost.scarcity == pytest.approx(0.5625)
    assert ev.cost.gpu_hour_price == pytest.approx(0.01 + 4.09 * 0.5625)
    # by hand: A100 Z1 1 GPU-h x 2.310625 + 38.4 g x 190e-6; T4 5 GPU-h at the same price
    assert ev.cost.cost[0] == pytest.approx(2.310625 + 38.4 * 190e-6)
    assert ev.cost.cost[2] == pytest.approx(5 * 2.310625 + 36.0 * 190e-6)


def test_fleet_share_is_clipped_to_0_1() -> None:
    c = ctx(table())
    c.fleet_share = 1.7
    ev = evaluate(c, [Step(Carbon(), TermArgs())], pricing=Pricing())
    assert ev.cost is not None and ev.cost.allocated_share == 1.0


def test_nudge_orders_the_top_level_by_one_level_only() -> None:
    levels = np.array([10, 10, 10, 9, 3])
    order = np.array([0.2, 0.9, 0.5, 1.0, 0.0])
    # only the best-ordered of the nodes at 10 keeps 10; the others drop one level, never more
    assert nudge_top(levels, order).tolist() == [9, 10, 9, 9, 3]
    assert nudge_top(np.array([10, 4]), np.array([0.0, 1.0])).tolist() == [10, 4]
    assert nudge_top(np.array([10, 10]), np.array([0.5, 0.5])).tolist() == [10, 10]


def test_stranded_gpus_count_beyond_the_least_any_candidate_strands() -> None:
    """FGD deltas -1, -1, +0.5 GPUs (filling a fragment is negative). Priced raw, the slow T4
    (5 h) would earn 5x the fragment-filling credit of the A100 (1 h) and costs would go
    negative; counted beyond the least (-1): 0, 0, 1.5 stranded GPUs."""
    c = ctx(table())
    c.fleet_share = 1.0  # s = 1: stranded GPU-hour at 4.10, GPU-hour at 4.10 (SCALED)
    run_h = np.array([1.0, 1.0, 5.0])
    scores = {
        "carbon": TermScore(np.array([38.4, 115.2, 36.0]), np.ones(3), "gCO2e", {"run_h": run_h}),
        "gpu_fit": TermScore(np.array([-1.0, -1.0, 0.5]), np.ones(3), "fragmented GPUs added"),
    }
    b = price(c, scores, SCALED, 1.0)
    np.testing.assert_allclose(b.stranded_gpus, [0.0, 0.0, 1.5])
    np.testing.assert_allclose(b.stranded_usd, [0.0, 0.0, 1.5 * 5 * 4.10])
    assert (b.cost > 0).all()
    assert b.cost[0] == pytest.approx(4.10 + 38.4 * 190e-6)
