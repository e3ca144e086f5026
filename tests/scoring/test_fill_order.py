"""The fleet's fill order ranks the zones by the carbon view's long-run intensity.

The simulator's view: the trailing mean of completed hours (never now or later), so the order
follows the year it replays; the live snapshot: the value a run window is judged by past the
forecast's end (with the shipped offline default, the static table: the same order as before).
Where the view has no value, the policy's static table. Expected positions are computed by hand.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import numpy as np
import pytest

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig
from carbon.series import HourlySeries, SeriesView
from carbon.testing import FixedView
from carbon.zones import builtin_annual_means
from scheduler.costs.fill_order import FillOrder, long_run_means
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.validate import load_policy
from tests.support.policy import POLICIES, node_table

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
# the policy's fixed table says Z2 is the cleaner zone
TABLE = {"Z1": 300.0, "Z2": 100.0}
# Z1 is clean (50 g) for hours 0..3, then dirty (500 g) for hours 4..7; Z2 is 200 g throughout
Z1 = [50.0] * 4 + [500.0] * 4
Z2 = [200.0] * 8


def hourly(zone: str, values: list[float]) -> HourlySeries:
    starts = T0 + HOUR * np.arange(len(values), dtype=np.float64)
    return HourlySeries(zone, starts, np.asarray(values, dtype=np.float64), HOUR, "test")


def view(now: float, z1: list[float] = Z1) -> SeriesView:
    """Trailing window 3 h: at the start of hour h, the mean of hours h-3 .. h-1."""
    series = {"Z1": hourly("Z1", z1), "Z2": hourly("Z2", Z2)}
    return SeriesView(series, now, horizon_s=2 * HOUR, trailing_s=3 * HOUR)


def name_order(name: str) -> float:
    return (zlib.crc32(name.encode()) & 0xFFFFFFFF) / 2.0**32


TABLE_ROWS = node_table([("a", "Z1", "r", "T4", 8), ("b", "Z2", "r", "T4", 8)])


def by_hand(z1_rank: int, z2_rank: int) -> list[float]:
    """(zone rank + 1 - name order) / 2 zones, for node a in Z1 and b in Z2."""
    return [(z1_rank + 1 - name_order("a")) / 2, (z2_rank + 1 - name_order("b")) / 2]


def test_the_order_follows_the_trailing_means_when_they_swap() -> None:
    order = FillOrder(TABLE, from_view=True)
    # hour 3: trailing hours 0..2, Z1 50 g < Z2 200 g: Z1 first (the table says Z2)
    early = view(T0 + 3 * HOUR)
    assert order.values(("Z1", "Z2"), early) == (50.0, 200.0)
    np.testing.assert_allclose(order.position(TABLE_ROWS, early), by_hand(0, 1))
    # hour 7: trailing hours 4..6, Z1 500 g > Z2 200 g: Z2 first
    late = view(T0 + 7 * HOUR)
    assert order.values(("Z1", "Z2"), late) == (500.0, 200.0)
    np.testing.assert_allclose(order.position(TABLE_ROWS, late), by_hand(1, 0))
    # hour 5: hours 2..4 = (50 + 50 + 500) / 3 = 200 for Z1, a tie with Z2: broken by zone name
    tie = view(T0 + 5 * HOUR)
    assert order.values(("Z1", "Z2"), tie) == (pytest.approx(200.0), 200.0)
    np.testing.assert_allclose(order.position(TABLE_ROWS, tie), by_hand(0, 1))
    # the fixed table (no view, or the view switched off): Z2 first at every hour
    np.testing.assert_allclose(order.position(TABLE_ROWS), by_hand(1, 0))
    off = FillOrder(TABLE, from_view=False)
    np.testing.assert_allclose(off.position(TABLE_ROWS, early), by_hand(1, 0))


def test_the_order_never_reads_now_or_later() -> None:
    order = FillOrder(TABLE, from_view=True)
    for now in (T0 + 3 * HOUR, T0 + 3.5 * HOUR):  # start and middle of hour 3
        base = order.position(TABLE_ROWS, view(now))
        # Z1 dirty from hour 3 (the one holding now) on: the order cannot see it
        future = [*Z1[:3], *[5000.0] * 5]
        np.testing.assert_allclose(order.position(TABLE_ROWS, view(now, future)), base)
        np.testing.assert_allclose(base, by_hand(0, 1))
        # hour 2, the last one over, does move it: (50 + 50 + 1000) / 3 > 200
        past = [50.0, 50.0, 1000.0, *Z1[3:]]
        np.testing.assert_allclose(order.position(TABLE_ROWS, view(now, past)), by_hand(1, 0))


def test_zones_the_view_does_not_know_use_the_table_then_go_last() -> None:
    # before any hour of the series is over the view has no long run: the table decides
    order = FillOrder(TABLE, from_view=True)
    first = view(T0 + 0.5 * HOUR)
    assert order.values(("Z1", "Z2"), first) == (300.0, 100.0)
    np.testing.assert_allclose(order.position(TABLE_ROWS, first), by_hand(1, 0))
    # per zone: Z1 from the view (250), Z2 from the table (100), Z3 nowhere (last), no zone last
    rows = [("a", "Z1"), ("b", "Z2"), ("c", "Z3"), ("d", None)]
    t = node_table([(name, zone, "r", "T4", 8) for name, zone in rows])
    fixed = FixedView(long_run={"Z1": 250.0, "Z9": 1.0})
    assert order.values(("Z1", "Z2", "Z3"), fixed) == (250.0, 100.0, None)
    want = [
        (1 + 1 - name_order("a")) / 3,
        (0 + 1 - name_order("b")) / 3,
        (2 + 1 - name_order("c")) / 3,
        (2 + 1 - name_order("d")) / 3,
    ]
    np.testing.assert_allclose(order.position(t, fixed), want)
    # a non-finite long-run value counts as none
    nan = FixedView(long_run={"Z1": float("nan"), "Z2": 400.0})
    assert order.values(("Z1", "Z2", "Z3"), nan) == (300.0, 400.0, None)


def test_ranks_are_cached_per_zones_and_values() -> None:
    order = FillOrder(TABLE, from_view=True)
    order.position(TABLE_ROWS, view(T0 + 3 * HOUR))
    order.position(TABLE_ROWS, view(T0 + 3.5 * HOUR))  # same trailing hours: same values
    assert len(order._ranks) == 1
    order.position(TABLE_ROWS, view(T0 + 7 * HOUR))
    assert len(order._ranks) == 2


def test_live_offline_default_keeps_the_static_order() -> None:
    """The shipped offline default (static provider, built-in table): the snapshot's long run is
    the table's value for every built-in zone, so the order and every node's cost are the ones
    the fixed table gave."""
    config = CarbonConfig()
    snap = CarbonCache(config).view()
    table = long_run_means(config)
    zones = sorted(builtin_annual_means())
    order = FillOrder(table, from_view=True)
    assert order.values(zones, snap) == tuple(table[z] for z in zones)
    assert snap.long_run("no-such-zone") is None
    rows = [(f"n{i}", z, "r", "NVIDIA-A100-SXM4-80GB", 8) for i, z in enumerate(zones)]
    t = node_table([*rows, ("x", "XX", "r", "NVIDIA-A100-SXM4-80GB", 8)])
    np.testing.assert_array_equal(order.position(t, snap), order.position(t))
    # through the engine of the shipped policy: the same costs as with the view switched off
    policy = load_policy(POLICIES / "default.yaml")
    live, fixed = Engine(policy), Engine(policy)  # the engine's order is off: switched on here
    for p in live.pricing.values():
        assert p.fill_order is not None
        p.fill_order.from_view = True
    pod = PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=1000)
    a = live.evaluate(pod, t, snap, T0, fleet_share=0.9)
    b = fixed.evaluate(pod, t, snap, T0, fleet_share=0.9)
    assert a.cost is not None and b.cost is not None and a.cost.fill_gpus is not None
    assert np.ptp(a.cost.fill_gpus) > 0  # the order is priced at this scarcity
    np.testing.assert_array_equal(a.cost.cost, b.cost.cost)
    np.testing.assert_array_equal(a.levels, b.levels)
