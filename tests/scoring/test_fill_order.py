"""The fleet's fill order: zones ranked by the policy's long-run table, then the name order.

What ``tests/scoring/test_cost.py`` does not cover: zones the table does not know and nodes
without a zone go last, ties break by zone name, ranks are cached per list of zones, and the
engine's order reads the policy's ``carbon.static`` over the built-in annual means. Expected
positions are computed by hand.
"""

from __future__ import annotations

import zlib

import numpy as np

from carbon.config import CarbonConfig
from carbon.zones import builtin_annual_means
from scheduler.costs.fill_order import FillOrder, long_run_means, zone_ranks
from tests.support.policy import node_table

TABLE = {"Z1": 300.0, "Z2": 100.0}


def name_order(name: str) -> float:
    return (zlib.crc32(name.encode()) & 0xFFFFFFFF) / 2.0**32


def test_zones_without_a_value_and_nodes_without_a_zone_go_last() -> None:
    rows = [("a", "Z1"), ("b", "Z2"), ("c", "Z3"), ("d", None)]
    t = node_table([(name, zone, "r", "T4", 8) for name, zone in rows])
    assert t.zones == ["Z1", "Z2", "Z3"]
    want = [
        (1 + 1 - name_order("a")) / 3,  # Z1: rank 1 (300 g)
        (0 + 1 - name_order("b")) / 3,  # Z2: rank 0 (100 g), filled first
        (2 + 1 - name_order("c")) / 3,  # Z3: no value, last
        (2 + 1 - name_order("d")) / 3,  # no zone: last, with the dirtiest
    ]
    np.testing.assert_allclose(FillOrder(TABLE).position(t), want)


def test_equal_values_rank_by_zone_name() -> None:
    ranks = zone_ranks(("Zb", "Za", "Zc"), {"Za": 200.0, "Zb": 200.0, "Zc": 100.0})
    np.testing.assert_array_equal(ranks, [2.0, 1.0, 0.0, 2.0])  # + the no-zone entry, last


def test_ranks_are_cached_per_list_of_zones() -> None:
    order = FillOrder(TABLE)
    two = node_table([("a", "Z1", "r", "T4", 8), ("b", "Z2", "r", "T4", 8)])
    order.position(two)
    order.position(node_table([("x", "Z1", "r", "T4", 8), ("y", "Z2", "r", "T4", 8)]))
    assert len(order._ranks) == 1
    order.position(node_table([("a", "Z2", "r", "T4", 8)]))
    assert len(order._ranks) == 2


def test_the_long_run_table_is_the_static_providers() -> None:
    """``carbon.static`` over the built-in annual means; without ``builtinStatic``, only the
    policy's own values."""
    builtin = builtin_annual_means()
    zone = sorted(builtin)[0]
    config = CarbonConfig.model_validate({"static": {zone: 1.0, "XX-NEW": 2.0}})
    means = long_run_means(config)
    assert means[zone] == 1.0 and means["XX-NEW"] == 2.0
    assert {z: v for z, v in means.items() if z not in (zone, "XX-NEW")} == {
        z: float(v) for z, v in builtin.items() if z != zone
    }
    bare = CarbonConfig.model_validate({"builtinStatic": False, "static": {"Z": 5.0}})
    assert long_run_means(bare) == {"Z": 5.0}
