"""Stranded GPUs past the forecast horizon at the fleet's long-run scarcity (by hand)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from carbon.testing import FixedView
from scheduler.costs.scarcity import LongRunScarcity
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.validate import load_policy
from scheduler.scoring import Pricing, price
from scheduler.terms.base import TermScore
from tests.scoring.test_cost import ctx, table
from tests.support.policy import POLICIES, node_table

HOUR = 3600.0


def test_trailing_mean_is_time_weighted_over_what_was_seen() -> None:
    ls = LongRunScarcity(window_s=4 * HOUR)
    assert ls.observe(0.0, 0.5) == 0.5  # nothing seen yet: this cycle's
    assert ls.observe(HOUR, 0.1) == pytest.approx(0.5)  # 0.5 held for the first hour
    # 0.5 for 1 h, then 0.1 for 2 h: (0.5 + 0.2) / 3
    assert ls.observe(3 * HOUR, 0.0) == pytest.approx(0.7 / 3)
    # at 6 h the 4 h window holds hours 2..6 (whole hourly bins: 2..3 at 0.1, 3..6 at 0)
    assert ls.observe(6 * HOUR, 0.0) == pytest.approx(0.1 / 4)
    # the clock going back (a new run on the same engine) starts over
    assert ls.observe(0.0, 0.9) == 0.9


def test_a_long_idle_gap_is_bounded_to_one_window() -> None:
    ls = LongRunScarcity(window_s=4 * HOUR)
    ls.observe(0.0, 0.0)  # idle from 0 on, until a year later it is full
    assert ls.observe(365 * 24 * HOUR, 1.0) == pytest.approx(0.0)
    assert len(ls._bins) <= 6


def test_hours_past_the_horizon_are_priced_at_the_long_run_scarcity() -> None:
    """Stranded GPUs (2, 0 and 1 beyond the least) over a 100 h run; share 1 now (s = 1), and a
    long-run scarcity of 0.25: 48 h at 4.10 x 1 and 52 h at 4.10 x 0.25 per stranded GPU."""
    c = ctx(table())
    c.fleet_share = 1.0
    run_h = np.full(3, 100.0)
    scores = {
        "carbon": TermScore(np.zeros(3), np.ones(3), "gCO2e", {"run_h": run_h}),
        "gpu_fit": TermScore(np.array([2.0, 0.0, 1.0]), np.ones(3), "fragmented GPUs added"),
    }
    ls = LongRunScarcity()
    ls.observe(c.now_s - 4 * HOUR, 0.0)  # idle for 3 h, then full for the last hour
    ls.observe(c.now_s - HOUR, 1.0)  # (price observes now: (3 x 0 + 1 x 1) / 4 = 0.25)
    base = Pricing(fill_order_gpus=0.0)
    p = replace(base, scarcity_horizon_h=48.0, long_scarcity=ls)
    b = price(c, scores, p, 1.0)
    per_gpu = 48 * 4.10 * 1.0 + 52 * 4.10 * 0.25
    np.testing.assert_allclose(b.stranded_usd, np.array([2.0, 0.0, 1.0]) * per_gpu)
    # off (the default): the whole run at this cycle's scarcity
    plain = price(c, scores, base, 1.0)
    np.testing.assert_allclose(plain.stranded_usd, np.array([2.0, 0.0, 1.0]) * 100 * 4.10)
    assert np.isnan(plain.long_run_scarcity) and np.isnan(plain.scarcity_horizon_h)
    # a run inside the horizon is unchanged
    short = {**scores, "carbon": TermScore(np.zeros(3), np.ones(3), "gCO2e", {"run_h": run_h / 4})}
    np.testing.assert_allclose(
        price(c, short, p, 1.0).stranded_usd, price(c, short, base, 1.0).stranded_usd
    )


def test_the_engine_prices_a_month_long_pod_past_48_h_at_what_the_fleet_saw() -> None:
    """The shipped policy's engine: idle for 3 h, then a burst (share 0.8, s = 0.64). A 30-day
    pod's stranded GPUs cost its first 48 h at 0.64 and the rest of its run at the mean so far,
    (3 h x 0 + 1 h x 0.64) / 4 h = 0.16; a 1-hour pod's all at 0.64 (5 h on a T4: inside the
    horizon). A hot reload keeps what the fleet saw."""
    policy = load_policy(POLICIES / "default.yaml")
    assert policy.prices.scarcityHorizon == 48 * HOUR  # the shipped default
    engine = Engine(policy)
    t = node_table([("a", "Z1", "r", "T4", 8), ("b", "Z2", "r", "T4", 8)])
    view = FixedView({"Z1": 100.0, "Z2": 100.0})
    t0 = 1.7e9
    pod = PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=500)
    engine.evaluate(pod, t, view, t0, fleet_share=0.0)
    engine.evaluate(pod, t, view, t0 + 3 * HOUR, fleet_share=0.8)
    month = engine.evaluate(pod, t, view, t0 + 4 * HOUR, fleet_share=0.8, duration_s=720 * HOUR)
    c = month.cost
    assert c is not None and c.scarcity == pytest.approx(0.64)
    assert (c.scarcity_horizon_h, c.long_run_scarcity) == (48.0, pytest.approx(0.16))
    run_h = month.terms["carbon"].detail["run_h"]
    price_h = policy.prices.strandedGpuHour
    want = c.stranded_gpus * (48 * price_h * 0.64 + (run_h - 48) * price_h * 0.16)
    assert np.ptp(c.stranded_gpus) > 0  # the nodes differ in what they strand
    np.testing.assert_allclose(c.stranded_usd, want)
    short = engine.evaluate(pod, t, view, t0 + 4 * HOUR, fleet_share=0.8, duration_s=HOUR)
    s = short.cost
    assert s is not None
    short_h = short.terms["carbon"].detail["run_h"]  # 1 h / the T4's relative speed, < 48 h
    assert (short_h < 48).all()
    np.testing.assert_allclose(s.stranded_usd, s.stranded_gpus * short_h * price_h * 0.64)
    reloaded = Engine(policy, previous=engine)
    assert reloaded.long_scarcity is engine.long_scarcity


def test_a_cycle_without_the_fleet_share_reads_the_long_run_without_feeding_it() -> None:
    """An explain over a few nodes prices with those nodes' share, not the fleet's: it must not
    enter the fleet's history (a later cycle sees only what the fleet's cycles recorded)."""
    ls = LongRunScarcity(window_s=4 * HOUR)
    ls.observe(0.0, 0.0)
    assert ls.observe(HOUR, 0.0) == 0.0  # idle for an hour
    c = ctx(table())
    c.now_s, c.fleet_share = 2 * HOUR, None  # three candidate nodes: their share, not the fleet's
    scores = {
        "carbon": TermScore(np.zeros(3), np.ones(3), "gCO2e", {"run_h": np.full(3, 100.0)}),
        "gpu_fit": TermScore(np.array([2.0, 0.0, 1.0]), np.ones(3), "fragmented GPUs added"),
    }
    p = Pricing(fill_order_gpus=0.0, scarcity_horizon_h=48.0, long_scarcity=ls)
    before = (ls._sum, ls._time, ls._last)
    b = price(c, scores, p, 1.0)  # these nodes are full (scarcity 1), the fleet is not
    assert b.long_run_scarcity == 0.0  # the fleet's mean so far
    assert (ls._sum, ls._time, ls._last) == before  # nothing recorded
    assert ls.observe(3 * HOUR, 0.0) == 0.0  # the fleet's next cycle: idle all along
    assert LongRunScarcity().peek(0.3) == 0.3  # nothing seen: this cycle's


@pytest.mark.parametrize(("horizon", "near_h"), [("24h", 24.0), ("72h", 72.0), (None, None)])
def test_the_policy_sets_the_horizon(horizon: str | None, near_h: float | None) -> None:
    """``prices.scarcityHorizon``: the same fleet history as above (long-run s 0.16 at the burst),
    a 30-day pod; null prices the whole run at this cycle's scarcity."""
    base = load_policy(POLICIES / "default.yaml")
    prices = {**base.prices.model_dump(mode="json"), "scarcityHorizon": horizon}
    policy = base.model_copy(update={"prices": type(base.prices).model_validate(prices)})
    engine = Engine(policy)
    t = node_table([("a", "Z1", "r", "T4", 8), ("b", "Z2", "r", "T4", 8)])
    view = FixedView({"Z1": 100.0, "Z2": 100.0})
    pod = PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=500)
    engine.evaluate(pod, t, view, 1.7e9, fleet_share=0.0)
    engine.evaluate(pod, t, view, 1.7e9 + 3 * HOUR, fleet_share=0.8)
    ev = engine.evaluate(pod, t, view, 1.7e9 + 4 * HOUR, fleet_share=0.8, duration_s=720 * HOUR)
    c = ev.cost
    assert c is not None
    run_h = ev.terms["carbon"].detail["run_h"]
    price_h = policy.prices.strandedGpuHour
    if near_h is None:
        assert np.isnan(c.scarcity_horizon_h)
        np.testing.assert_allclose(c.stranded_usd, c.stranded_gpus * run_h * price_h * 0.64)
    else:
        assert c.scarcity_horizon_h == near_h
        far = c.stranded_gpus * (run_h - near_h) * price_h * 0.16
        np.testing.assert_allclose(c.stranded_usd, c.stranded_gpus * near_h * price_h * 0.64 + far)
