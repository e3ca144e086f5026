"""GPU time, slowdown, completion time, waiting, unplaced pods and load levels, on tiny fleets
whose answers are computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scheduler.cli.main import app
from scheduler.policy.model import Policy, WorkloadClass
from scheduler.sim.replay import fastest_speed, simulate, tie_keys
from scheduler.sim.run import (
    SimOptions,
    build_policies,
    compare_on,
    demand_peak_pct,
    find_load_scale,
    parse_load_levels,
)
from scheduler.sim.trace import SimNodes, SimPods, cut_fleet
from tests.support.sim import HOUR, POWER, T0, nodes, pods, series

POLICIES = build_policies(POWER, Policy())
CLEAN_DIRTY = {"clean": series("clean", [50.0]), "dirty": series("dirty", [500.0])}


def t4_and_g2(t4_zone: str = "clean", g2_zone: str = "dirty") -> SimNodes:
    """A T4 node (half speed in the test power model) and a G2 node (speed 1), one GPU each."""
    return SimNodes(
        names=["t4", "g2"],
        cpu_milli=np.array([8000, 8000], dtype=np.int64),
        mem_bytes=np.array([64, 64], dtype=np.int64) * 2**30,
        gpus=np.array([1, 1], dtype=np.int64),
        model=["T4", "G2"],
        zone=[t4_zone, g2_zone],
    )


def test_gpu_hours_slowdown_and_jct_of_a_carbon_placement() -> None:
    # two 1-GPU pods of 1 trace-hour: carbon-greedy sends the first to the clean T4 (runs 2 h,
    # slowdown 2 against the G2 it could have had), the second to the dirty G2 (1 h, slowdown 1)
    trace = pods([0.0, 0.0], [1.0, 1.0])
    c = compare_on(SimOptions(), trace, t4_and_g2(), CLEAN_DIRTY, POWER, policies=POLICIES)
    m = c.runs["carbon-greedy"].metrics
    assert c.runs["carbon-greedy"].placements.runtime.tolist() == [2 * HOUR, HOUR]
    assert m["gpu_hours"] == pytest.approx(3.0)
    assert m["slowdown_mean"] == pytest.approx(1.5)
    assert m["jct_p95_s"] == pytest.approx(HOUR + 0.95 * HOUR)  # numpy's linear p95 of 1 h, 2 h
    assert m["energy_kwh"] == pytest.approx(0.12 + 0.25)  # T4 60 W x 2 h, G2 250 W x 1 h
    summary = c.summary()["policies"]["carbon-greedy"]
    assert {"gpu_hours", "slowdown_mean", "jct_p95_s", "unplaced"} <= set(summary)


def test_slowdown_is_against_the_fastest_model_the_pod_may_use() -> None:
    fleet = t4_and_g2()
    trace = pods([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    trace.models[1] = ("T4",)  # may only run on T4: its fastest feasible model is T4
    trace = SimPods(
        trace.names,
        trace.cpu_milli,
        trace.mem_bytes,
        np.array([1, 1, 0], dtype=np.int64),  # the third pod is CPU-only
        np.array([1000, 1000, 0], dtype=np.int64),
        trace.models,
        trace.qos,
        trace.arrival,
        trace.duration,
    )
    assert fastest_speed(trace, fleet, POWER).tolist() == [1.0, 0.5, 1.0]


def test_jct_counts_queue_wait_and_a_pod_that_never_fits_is_counted_not_dropped() -> None:
    fleet = nodes(["clean"])  # one GPU
    trace = pods([0.0, 0.5, 0.6], [1.0, 1.0, 1.0])
    two_gpus = SimPods(
        trace.names,
        trace.cpu_milli,
        trace.mem_bytes,
        np.array([1, 1, 2], dtype=np.int64),  # the third pod wants 2 GPUs: no node has them
        trace.gpu_milli,
        trace.models,
        trace.qos,
        trace.arrival,
        trace.duration,
    )
    c = compare_on(SimOptions(), two_gpus, fleet, CLEAN_DIRTY, POWER, policies=POLICIES)
    m = c.runs["fgd"].metrics
    assert m["unplaced"] == 1 and m["pods_waiting"] == 1
    assert m["wait_mean_s"] == pytest.approx(0.25 * HOUR)  # (0 + 0.5 h) over the placed pods
    # completion times: 1 h, and 0.5 h wait + 1 h run
    assert m["jct_p95_s"] == pytest.approx(HOUR + 0.95 * 0.5 * HOUR)
    assert m["gpu_hours"] == pytest.approx(2.0)
    assert c.summary()["policies"]["fgd"]["unplaced"] == 1
    assert m["unplaced_placed_by_others"] == 0  # no policy could place it


def test_a_pod_one_policy_strands_and_another_places_is_counted() -> None:
    # a 1-GPU clean node and a 2-GPU dirty node; a 2-GPU pod fits only the dirty one. A policy
    # confined to the clean zone never places it; every other policy does.
    fleet = SimNodes(
        names=["clean-1", "dirty-2"],
        cpu_milli=np.array([8000, 8000], dtype=np.int64),
        mem_bytes=np.array([64, 64], dtype=np.int64) * 2**30,
        gpus=np.array([1, 2], dtype=np.int64),
        model=["G2", "G2"],
        zone=["clean", "dirty"],
    )
    trace = pods([0.0, 0.0], [1.0, 1.0], gpus=2)
    confined = WorkloadClass.model_validate(
        {"prices": {"gpuHourIdle": 0.0}, "constraints": {"allowedZones": ["clean"]}}
    )
    policies = dict(POLICIES)
    policies["lowcarb"] = Policy(power=POWER, classes={"default": confined})
    c = compare_on(SimOptions(), trace, fleet, CLEAN_DIRTY, POWER, policies=policies)
    lowcarb, k8s = c.runs["lowcarb"].metrics, c.runs["k8s-default"].metrics
    assert lowcarb["unplaced"] == 2 and lowcarb["unplaced_placed_by_others"] == 2
    assert k8s["unplaced"] == 0 and k8s["unplaced_placed_by_others"] == 0
    # the second pod waited for the dirty node rather than being dropped
    assert k8s["pods_waiting"] == 1 and k8s["wait_mean_s"] == pytest.approx(HOUR / 2)


def test_a_waiting_pod_is_retried_only_where_capacity_was_freed() -> None:
    # G2 busy 2 h, T4 busy 1 h; the third pod may only use G2: when the T4 frees at 1 h it still
    # fits nowhere, when the G2 frees at 2 h it starts there
    fleet = t4_and_g2("clean", "clean")
    trace = pods([0.0, 0.0, 0.1], [2.0, 0.5, 1.0])  # on T4 the second pod runs 1 h
    trace.models[0] = ("G2",)
    trace.models[1] = ("T4",)
    trace.models[2] = ("G2",)
    out = simulate(trace, fleet, POLICIES["fgd"], CLEAN_DIRTY)
    assert [fleet.names[n] for n in out.node.tolist()] == ["g2", "t4", "g2"]
    assert out.start.tolist() == pytest.approx([T0, T0, T0 + 2 * HOUR])
    assert out.peak_allocated_gpu_pct == pytest.approx(100.0)


def test_ties_use_common_random_numbers() -> None:
    nodes_ = np.arange(40, dtype=np.int64)
    keys = tie_keys(7, 123, nodes_)
    pick = int(nodes_[np.argmin(keys)])
    assert tie_keys(7, 123, nodes_).tolist() == keys.tolist()  # a pure function
    others = nodes_[(nodes_ != pick) & (nodes_ % 3 != 0)]
    fewer = np.sort(np.append(others, pick))
    assert int(fewer[np.argmin(tie_keys(7, 123, fewer))]) == pick  # others leaving: same pick
    picks = [int(np.argmin(tie_keys(0, p, np.arange(4, dtype=np.int64)))) for p in range(4000)]
    assert all(850 < picks.count(k) < 1150 for k in range(4))  # uniform over the tied nodes


def test_demand_peak_is_the_most_gpus_requested_at_once() -> None:
    overlap = pods([0.0, 1.0], [2.0, 2.0])
    assert demand_peak_pct(overlap, 4.0) == pytest.approx(50.0)
    back_to_back = pods([0.0, 1.0], [1.0, 1.0])  # one leaves as the next arrives
    assert demand_peak_pct(back_to_back, 4.0) == pytest.approx(25.0)
    assert demand_peak_pct(back_to_back.scaled(2.0), 4.0) == pytest.approx(50.0)


def test_load_scale_search_brackets_then_bisects() -> None:
    def measure(scale: float) -> float:
        return min(95.0, 10.0 * np.log2(scale))  # 60 % at x64, 90 % at x512

    scale, tried = find_load_scale(measure, 60.0, 10.0, tolerance=0.5)
    assert abs(measure(scale) - 60.0) <= 0.5
    assert len(tried) <= 8 and tried[0][0] == 10.0
    # unreachable (the fleet saturates at 95 %): stops once doubling no longer helps
    scale, tried = find_load_scale(measure, 99.0, 100.0)
    assert scale == 800.0 and [s for s, _ in tried] == [100.0, 200.0, 400.0, 800.0, 1600.0]
    # or at the factor where every pod arrives at once
    scale, tried = find_load_scale(measure, 99.0, 100.0, max_scale=300.0)
    assert [s for s, _ in tried] == [100.0, 200.0, 300.0]
    # already above the target at real arrival times: a level cannot go below scale 1
    scale, tried = find_load_scale(lambda s: 70.0, 60.0, 4.0)
    assert scale >= 1.0 and min(s for s, _ in tried) == 1.0


def test_load_levels_compress_arrivals_until_the_peak_is_reached() -> None:
    # eight 1-GPU pods, one an hour, each running 2 h, on four GPUs: at real times two run at
    # once (50 %); arrivals every 1/1.5 h or closer put four at once on the GPUs (100 %)
    fleet = nodes(["clean", "clean", "dirty", "dirty"])
    trace = pods([float(h) for h in range(8)], [2.0] * 8)
    opts = SimOptions(load_levels=("real", "75", "100"), policies=("carbon-greedy",))
    c = compare_on(opts, trace, fleet, CLEAN_DIRTY, POWER, policies=POLICIES)
    real, mid, full = c.levels
    assert real.runs is c.runs and real.peak_allocated_gpu_pct == pytest.approx(50.0)
    assert mid.peak_allocated_gpu_pct == pytest.approx(75.0)
    assert full.peak_allocated_gpu_pct == pytest.approx(100.0)
    assert 1.0 < mid.load_scale < full.load_scale
    assert full.load_scale == pytest.approx(1.5, rel=1e-3)
    assert full.runs["carbon-greedy"].metrics["unplaced"] == 0
    doc = json.loads(json.dumps(c.summary()))
    assert [lv["load"] for lv in doc["levels"]] == ["real", "75", "100"]
    level = doc["levels"][2]
    assert level["peak_allocated_gpu_pct"] == pytest.approx(100.0)
    assert set(level["policies"]) == {"k8s-default", "carbon-greedy", "bound"}
    assert {"gpu_hours", "slowdown_mean", "jct_p95_s", "wait_mean_s", "pods_waiting"} <= set(
        level["policies"]["carbon-greedy"]
    )


def test_parse_load_levels_and_the_cli_error() -> None:
    assert parse_load_levels("real, 60,90%") == ("real", "60", "90")
    for bad in ("fast", "0", "120", ","):
        with pytest.raises(ValueError, match="--load-levels"):
            parse_load_levels(bad)
    result = CliRunner().invoke(app, ["simulate", "--pods", "5", "--load-levels", "real,hot"])
    assert result.exit_code == 2
    assert "--load-levels" in result.output and "'hot'" in result.output


def test_cut_fleet_keeps_each_models_share() -> None:
    fleet = SimNodes(
        names=[f"n{i}" for i in range(10)],
        cpu_milli=np.full(10, 8000, dtype=np.int64),
        mem_bytes=np.full(10, 2**30, dtype=np.int64),
        gpus=np.full(10, 1, dtype=np.int64),
        model=["P100"] * 4 + ["G2"] * 6,
        zone=[""] * 10,
    )
    half = cut_fleet(fleet, 0.5, seed=3)
    assert half.model.count("P100") == 2 and half.model.count("G2") == 3
    assert half.names == sorted(half.names, key=lambda n: int(n[1:]))  # file order kept
    tiny = cut_fleet(fleet, 0.01)
    assert sorted(tiny.model) == ["G2", "P100"]  # at least one node of every model
    assert cut_fleet(fleet, 1.0) is fleet
