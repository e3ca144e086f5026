"""The one-currency model: node cost from physical quantities x prices, and its 0..10 levels."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest

from carbon.config import CarbonConfig
from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.cluster.table import NodeTable
from scheduler.costs.fill_order import FillOrder, long_run_means, zone_ranks
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
    b = price(c, scores, replace(SCALED, fill_order_gpus=0.0), 1.0)  # the FGD delta alone
    np.testing.assert_allclose(b.stranded_gpus, [0.0, 0.0, 1.5])
    np.testing.assert_allclose(b.stranded_usd, [0.0, 0.0, 1.5 * 5 * 4.10])
    assert (b.cost > 0).all()
    assert b.cost[0] == pytest.approx(4.10 + 38.4 * 190e-6)


def name_order(name: str) -> float:
    return zlib.crc32(name.encode()) / 2**32


def test_zone_ranks_cleanest_first_unknown_and_zoneless_last() -> None:
    """B (10 g) before A (50 g); C has no long-run value: last, as are nodes without a zone
    (the extra entry)."""
    ranks = zone_ranks(["A", "B", "C"], {"B": 10.0, "A": 50.0, "X": 1.0})
    assert ranks.tolist() == [1.0, 0.0, 2.0, 2.0]


def test_long_run_means_are_the_static_values_over_the_builtin_table() -> None:
    assert long_run_means(CarbonConfig(static={"Z2": 5.0}, builtinStatic=False)) == {"Z2": 5.0}
    both = long_run_means(CarbonConfig(static={"DE": 1.0}))
    assert both["DE"] == 1.0 and both["FR"] == pytest.approx(99.4)  # FR: the built-in table


def test_fill_order_counts_gpus_stranded_by_zone_then_node_order_by_hand() -> None:
    """Equal FGD deltas: the stranded GPUs are fillOrderGpus x each node's position in the fill
    order, beyond the least. Z1 (100 g) fills before Z2 (300 g); in a zone, the name order."""
    t = table()
    c = ctx(t)
    c.fleet_share = 1.0
    run_h = np.array([1.0, 1.0, 5.0])
    scores = {
        "carbon": TermScore(np.array([38.4, 115.2, 36.0]), np.ones(3), "gCO2e", {"run_h": run_h}),
        "gpu_fit": TermScore(np.zeros(3), np.ones(3), "fragmented GPUs added"),
    }
    order = FillOrder({"Z1": 100.0, "Z2": 300.0})
    b = price(c, scores, replace(SCALED, fill_order_gpus=2.0, fill_order=order), 1.0)
    # position = (zone rank + 1 - name order) / 2 zones: Z1 in [0, 0.5], Z2 in [0.5, 1]
    pos = np.array(
        [
            (0 + 1 - name_order("n0")) / 2,
            (1 + 1 - name_order("n1")) / 2,
            (0 + 1 - name_order("n2")) / 2,
        ]
    )
    assert b.fill_gpus is not None
    np.testing.assert_allclose(b.fill_gpus, 2.0 * pos)
    np.testing.assert_allclose(b.stranded_gpus, 2.0 * (pos - pos.min()))
    np.testing.assert_allclose(b.stranded_usd, b.stranded_gpus * run_h * 4.10)
    assert b.fill_gpus[1] > max(b.fill_gpus[0], b.fill_gpus[2])  # the dirty zone fills last
    # the order follows the long-run values: Z2 made the cleaner one fills first instead
    flipped = FillOrder({"Z1": 300.0, "Z2": 100.0})
    f = price(c, scores, replace(SCALED, fill_order_gpus=2.0, fill_order=flipped), 1.0)
    assert f.fill_gpus is not None and f.fill_gpus[1] < min(f.fill_gpus[0], f.fill_gpus[2])
    # without long-run values the order is the name order alone; 0 turns it off
    plain = price(c, scores, replace(SCALED, fill_order_gpus=2.0), 1.0)
    assert plain.fill_gpus is not None
    names = np.array([name_order(n) for n in ("n0", "n1", "n2")])
    np.testing.assert_allclose(plain.fill_gpus, 2.0 * (1.0 - names))
    off = price(c, scores, replace(SCALED, fill_order_gpus=0.0), 1.0)
    np.testing.assert_allclose(off.stranded_gpus, 0.0)


def test_fill_order_is_priced_by_scarcity_so_an_idle_fleet_follows_carbon() -> None:
    """On an idle fleet (s = 0) the fill order costs nothing: a node in this hour's cleaner zone
    wins; on a full one the stranded price (4.10 $/h) outweighs the carbon difference (0.015 $),
    so the node first in the fill order wins among equal FGD deltas."""
    order = FillOrder({"Z1": 300.0, "Z2": 100.0})  # the long run says Z2; this hour, Z1
    p = replace(SCALED, gpu_hour_busy=0.01, fill_order=order)
    c = ctx(table())
    scores = {
        "carbon": TermScore(np.array([38.4, 115.2, 36.0]), np.ones(3), "gCO2e"),
        "gpu_fit": TermScore(np.zeros(3), np.ones(3), "fragmented GPUs added"),
    }
    idle = price(c, scores, p, 0.0)
    np.testing.assert_allclose(idle.stranded_usd, 0.0)
    assert int(np.argmin(idle.cost)) in (0, 2)  # a node in Z1, the cleaner zone this hour
    full = price(c, scores, p, 1.0)
    assert int(np.argmin(full.cost)) == 1
