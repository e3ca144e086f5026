"""The simulator on tiny fleets where the right placement, wait and bound are known by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scheduler.policy.model import Policy
from scheduler.sim.bound import spatial_bound
from scheduler.sim.carbon import Integrals
from scheduler.sim.replay import account, binned, hour_edges, simulate
from scheduler.sim.run import (
    PolicyRun,
    SimOptions,
    build_policies,
    compare_on,
    shift_holds,
    shift_saving,
)
from scheduler.sim.trace import SimNodes, SimPods
from tests.support.sim import HOUR, POWER, T0, nodes, pods, series

POLICIES = build_policies(POWER, Policy())
CLEAN_DIRTY = {"clean": series("clean", [50.0]), "dirty": series("dirty", [500.0])}


def test_carbon_greedy_fills_the_clean_zone_until_it_is_full() -> None:
    fleet = nodes(["dirty", "clean", "dirty", "clean"])
    trace = pods([0.0, 0.1, 0.2, 0.3], [5.0] * 4)
    out = simulate(trace, fleet, POLICIES["carbon-greedy"], CLEAN_DIRTY)
    zones = [fleet.zone[n] for n in out.node.tolist()]
    assert zones == ["clean", "clean", "dirty", "dirty"]
    assert (out.start == trace.arrival).all()  # nobody waited


def test_k8s_default_is_carbon_blind_and_prefers_the_least_allocated_node() -> None:
    fleet = SimNodes(
        names=["small-clean", "big-dirty"],
        cpu_milli=np.array([8000, 64000], dtype=np.int64),
        mem_bytes=np.array([64, 512], dtype=np.int64) * 2**30,
        gpus=np.array([1, 1], dtype=np.int64),
        model=["G2", "G2"],
        zone=["clean", "dirty"],
    )
    out = simulate(pods([0.0], [1.0]), fleet, POLICIES["k8s-default"], CLEAN_DIRTY)
    assert fleet.names[int(out.node[0])] == "big-dirty"


def test_bound_equals_the_hand_optimum_and_is_below_every_policy() -> None:
    fleet = nodes(["dirty", "clean", "dirty", "clean"])
    trace = pods([0.0] * 4, [2.0] * 4)  # four 1-GPU pods for two whole hours, two clean GPUs
    integrals = Integrals.of(CLEAN_DIRTY)
    edges = hour_edges(T0, T0 + 2 * HOUR)
    # 250 W x 2 h = 0.5 kWh per pod: two at 50 g/kWh, two at 500 g/kWh
    hand_kg = (2 * 0.5 * 50 + 2 * 0.5 * 500) / 1000
    bound = spatial_bound(trace, fleet, POWER, integrals, edges)
    assert bound.kg == pytest.approx(hand_kg)
    assert bound.zone_kg.tolist() == pytest.approx([0.05, 0.5])  # clean, dirty
    for name, policy in POLICIES.items():
        placed = simulate(trace, fleet, policy, CLEAN_DIRTY)
        kg = account(trace, fleet, placed, POWER, integrals, edges).pod_kg.sum()
        assert kg >= bound.kg - 1e-9, name
    greedy = simulate(trace, fleet, POLICIES["carbon-greedy"], CLEAN_DIRTY)
    assert account(trace, fleet, greedy, POWER, integrals, edges).pod_kg.sum() == pytest.approx(
        hand_kg
    )


def test_bound_lp_uses_spare_clean_capacity_hour_by_hour() -> None:
    # three pods, clean zone holds one: hour 0 congested (LP), hour 1 only one pod left (closed)
    fleet = nodes(["clean", "dirty", "dirty"])
    trace = pods([0.0, 0.0, 0.0], [2.0, 1.0, 1.0])
    bound = spatial_bound(trace, fleet, POWER, Integrals.of(CLEAN_DIRTY), hour_edges(T0, T0 + 7200))
    # hour 0: one GPU-hour clean, two dirty; hour 1: the long pod's last hour clean
    assert bound.kg == pytest.approx((0.25 * 50 + 2 * 0.25 * 500 + 0.25 * 50) / 1000)
    assert bound.lp_hours == 1


def test_queued_pod_waits_until_the_gpu_is_free() -> None:
    fleet = nodes(["clean"])
    trace = pods([0.0, 10 / HOUR, 20 / HOUR], [100 / HOUR] * 3)
    out = simulate(trace, fleet, POLICIES["fgd"], CLEAN_DIRTY)
    assert (out.start - out.ready).tolist() == pytest.approx([0.0, 90.0, 180.0])
    assert out.peak_demand_gpus == pytest.approx(3.0)
    assert out.unallocated_at_peak_pct == pytest.approx(0.0)
    assert out.decisions >= 3


def test_shared_gpus_are_packed_and_released() -> None:
    fleet = nodes(["clean"])  # one GPU
    trace = pods([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], milli=500)
    out = simulate(trace, fleet, POLICIES["bestfit"], CLEAN_DIRTY)
    waits = (out.start - out.ready).tolist()
    assert waits == pytest.approx([0.0, 0.0, HOUR])  # two halves share the GPU, the third waits
    assert out.gpu_index[0] == out.gpu_index[1] == (0,)


def test_slack_moves_a_batch_job_into_the_clean_hour() -> None:
    s = {"a": series("a", [500.0, 500.0, 500.0, 50.0, 500.0, 500.0])}
    integrals = Integrals.of(s)
    trace = pods([0.0, 0.0], [1.0, 1.0])
    trace.qos[0] = "BE"  # batch: may wait; the LS pod may not
    holds = shift_holds(trace, integrals, np.array([1.0]), 4.0, "mean")
    assert holds.ready.tolist() == [T0 + 3 * HOUR, T0]
    assert holds.hold_s.tolist() == [3 * HOUR, 0.0]
    assert holds.expected_saving.tolist() == pytest.approx([0.9, 0.0])
    fleet = nodes(["a", "a"])
    placed = simulate(trace, fleet, POLICIES["k8s-default"], s, ready=holds.ready)
    acc = account(trace, fleet, placed, POWER, integrals)
    assert acc.pod_kg.tolist() == pytest.approx([0.25 * 50 / 1000, 0.25 * 500 / 1000])
    run = PolicyRun("shift-only", placed, acc, holds.hold_s)
    base_p = simulate(trace, fleet, POLICIES["k8s-default"], s)
    base = PolicyRun(
        "k8s-default", base_p, account(trace, fleet, base_p, POWER, integrals), 0 * holds.hold_s
    )
    saving = shift_saving(run, base, trace, integrals)
    assert saving["gate_saved_pct"] == pytest.approx(90.0)
    assert saving["shift_saved_batch_pct"] == pytest.approx(90.0)
    assert saving["shift_saved_pct"] == pytest.approx(100 * (1 - (12.5 + 125) / (125 + 125)))
    # two hours of slack cannot reach the clean hour: every start is as bad, so no hold
    assert shift_holds(trace, integrals, np.array([1.0]), 2.0, "mean").ready.tolist() == [T0, T0]
    # a 90 % saving is held at min_saving 0.5 but not at 0.95
    one = np.array([1.0])
    assert shift_holds(trace, integrals, one, 4.0, "mean", 0.5).ready[0] == T0 + 3 * HOUR
    assert shift_holds(trace, integrals, one, 4.0, "mean", 0.95).ready[0] == T0


def test_lowcarb_shift_plans_per_zone_against_the_best_zone_now() -> None:
    s = {"a": series("a", [300.0, 300.0, 40.0, 300.0]), "b": series("b", [100.0])}
    integrals = Integrals.of(s)
    trace = pods([0.0], [1.0], qos="BE")
    weights = np.array([1.0, 1.0])
    # mean of zones: 200, 200, 70 -> wait for hour 2; zone a at hour 2 (40) beats b now (100)
    assert shift_holds(trace, integrals, weights, 3.0, "mean").ready[0] == T0 + 2 * HOUR
    best = shift_holds(trace, integrals, weights, 3.0, "best")
    assert best.ready[0] == T0 + 2 * HOUR
    assert best.expected_saving[0] == pytest.approx(0.6)
    flat = {"a": series("a", [300.0, 30.0]), "b": series("b", [20.0])}
    # mean (160, 25) says wait an hour; zone b now (20) is as good as it gets
    assert shift_holds(trace, Integrals.of(flat), weights, 3.0, "mean").ready[0] == T0 + HOUR
    assert shift_holds(trace, Integrals.of(flat), weights, 3.0, "best").ready[0] == T0


def test_a_plan_that_hops_zones_mid_run_is_not_a_saving() -> None:
    # a 2 h run: the hourly minimum over zones (100, 10, 10, 100) would promise 10 g from hour 1,
    # but a pod cannot change zone mid-run: every 2 h window of either zone averages >= 55 g,
    # and zone b now already gives 55 g, so the gate must not hold it
    s = {
        "a": series("a", [100.0, 100.0, 10.0, 100.0]),
        "b": series("b", [100.0, 10.0, 100.0, 100.0]),
    }
    trace = pods([0.0], [2.0], qos="BE")
    holds = shift_holds(trace, Integrals.of(s), np.array([1.0, 1.0]), 3.0, "best")
    assert holds.ready[0] == T0 and holds.expected_saving[0] == 0.0


def test_shift_saving_against_the_same_policy_without_holds_two_zones_by_hand() -> None:
    # zones a (400 g, 100 g in hour 2) and b (300 g flat); one 1-GPU node each, the node in b
    # listed first, so the node table's first-seen zone order (b, a) differs from the run's
    # (a, b). A batch pod and a serving pod arrive together, each needing the GPU for one hour
    # (250 W, PUE 1: 0.25 kWh).
    s = {
        "a": series("a", [400.0, 400.0, 100.0, 400.0, 400.0, 400.0]),
        "b": series("b", [300.0]),
    }
    fleet = SimNodes(
        names=["small-b", "big-a"],
        cpu_milli=np.array([8000, 64000], dtype=np.int64),
        mem_bytes=np.array([64, 512], dtype=np.int64) * 2**30,
        gpus=np.array([1, 1], dtype=np.int64),
        model=["G2", "G2"],
        zone=["b", "a"],
    )
    trace = pods([0.0, 0.0], [1.0, 1.0])
    trace.qos[0] = "BE"
    policies = dict(POLICIES)
    policies["lowcarb"] = POLICIES["carbon-greedy"]  # placement decided by carbon alone
    c = compare_on(
        SimOptions(slack_h=4.0, min_saving=0.1), trace, fleet, s, POWER, policies=policies
    )
    kg = {name: run.accounting.pod_kg.tolist() for name, run in c.runs.items()}
    # k8s-default (biggest free node first): batch -> a now (100 g), serving -> b (75 g)
    assert kg["k8s-default"] == pytest.approx([0.100, 0.075])
    # shift-only plans on the zones' mean (350, 350, 200): holds the batch pod to hour 2 (saves
    # 43 %); the serving pod then takes a (100 g), and the batch pod a in hour 2 (25 g)
    assert c.runs["shift-only"].hold_s.tolist() == [2 * HOUR, 0.0]
    assert kg["shift-only"] == pytest.approx([0.025, 0.100])
    shift = c.runs["shift-only"].metrics
    assert shift["shift_saved_pct"] == pytest.approx(100 * (1 - 0.125 / 0.175))  # 28.6 %
    assert shift["shift_saved_batch_pct"] == pytest.approx(75.0)
    assert shift["gate_saved_pct"] == pytest.approx(75.0)  # a at hour 2 against a at arrival
    assert c.runs["shift-only"].placements.zone.tolist() == [0, 0]  # zone a in the run's order
    # carbon placement: batch -> b now (75 g), serving -> a (100 g); with the gate, the best
    # zone later (a, 100 g) against the best zone now (b, 300 g) saves 67 %: held to hour 2
    assert kg["lowcarb"] == pytest.approx([0.075, 0.100])
    assert kg["lowcarb-shift"] == pytest.approx([0.025, 0.075])
    lc = c.runs["lowcarb-shift"].metrics
    assert lc["shift_saved_pct"] == pytest.approx(100 * (1 - 0.100 / 0.175))  # 42.9 %
    assert lc["shift_saved_batch_pct"] == pytest.approx(100 * (1 - 0.025 / 0.075))
    planned = c.runs["lowcarb-shift"].expected_saving
    assert planned is not None and planned.tolist() == pytest.approx([2 / 3, 0.0])
    # the figures add up: shift tCO2e = base tCO2e x (1 - saving)
    for name, base in (("shift-only", "k8s-default"), ("lowcarb-shift", "lowcarb")):
        m = c.runs[name].metrics
        expect = c.runs[base].metrics["tco2e"] * (1 - m["shift_saved_pct"] / 100)
        assert m["tco2e"] == pytest.approx(expect)
    # a gate never holds for less than minSaving: at 0.7 neither plan (43 %, 67 %) is held
    strict = compare_on(
        SimOptions(slack_h=4.0, min_saving=0.7), trace, fleet, s, POWER, policies=policies
    )
    for name in ("shift-only", "lowcarb-shift"):
        assert strict.runs[name].metrics["pods_held"] == 0
        assert strict.runs[name].metrics["shift_saved_pct"] == pytest.approx(0.0)


def test_accounting_matches_a_brute_force_integral() -> None:
    s = {"a": series("a", [100.0, 300.0, 200.0])}
    integrals = Integrals.of(s)
    trace = pods([0.5], [1.25])  # from 0.5 h to 1.75 h: 0.5 h at 100, then 0.75 h at 300
    fleet = nodes(["a"])
    placed = simulate(trace, fleet, POLICIES["fgd"], s)
    acc = account(trace, fleet, placed, POWER, integrals)
    kwh = 0.25 * 1.25
    mean = (0.5 * 100 + 0.75 * 300) / 1.25
    assert acc.pod_kwh[0] == pytest.approx(kwh)
    assert acc.pod_kg[0] == pytest.approx(kwh * mean / 1000)
    assert acc.zone_hour_kg.sum() == pytest.approx(acc.pod_kg.sum())
    assert acc.zone_hour_gpus[0].tolist() == pytest.approx([0.5, 0.75])


def test_binned_is_exact_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    start = rng.uniform(0, 10, 200)
    end = start + rng.uniform(0, 4, 200)
    w = rng.uniform(0, 2, 200)
    edges = np.linspace(-1, 15, 17)
    expect = [
        float(np.sum(w * np.clip(np.minimum(end, b) - np.maximum(start, a), 0, None)))
        for a, b in itertools.pairwise(edges.tolist())
    ]
    assert binned(start, end, w, edges).tolist() == pytest.approx(expect)


def test_a_slower_gpu_runs_longer_and_the_bound_knows_it() -> None:
    t4 = nodes(["clean"], model="T4")  # 60 W at half speed: 120 Wh per trace-hour of work
    g2 = nodes(["dirty"])
    fleet = SimNodes(
        names=["t4", "g2"],
        cpu_milli=np.concatenate([t4.cpu_milli, g2.cpu_milli]),
        mem_bytes=np.concatenate([t4.mem_bytes, g2.mem_bytes]),
        gpus=np.concatenate([t4.gpus, g2.gpus]),
        model=["T4", "G2"],
        zone=["clean", "dirty"],
    )
    trace = pods([0.0], [1.0])
    integrals = Integrals.of(CLEAN_DIRTY)
    placed = simulate(trace, fleet, POLICIES["carbon-greedy"], CLEAN_DIRTY)
    assert fleet.names[int(placed.node[0])] == "t4"
    assert placed.runtime[0] == pytest.approx(2 * HOUR)
    acc = account(trace, fleet, placed, POWER, integrals)
    assert acc.pod_kwh[0] == pytest.approx(0.12)
    assert acc.pod_kg[0] == pytest.approx(0.12 * 50 / 1000)
    bound = spatial_bound(trace, fleet, POWER, integrals, hour_edges(T0, T0 + 2 * HOUR))
    assert bound.kg == pytest.approx(0.12 * 50 / 1000)


def test_scarcity_follows_the_busy_fleet_not_the_idle_candidates() -> None:
    """Three 2-GPU G2 nodes in the clean zone are taken by long 2-GPU pods (6 of 8 GPUs: share
    0.75, s = 0.5625); the 1-GPU pod that follows fits only the idle T4 (clean, 0.5x speed) and
    the idle G2 (dirty). By hand, GPU time at 0.41 x 0.5625 = 0.2306 $/h: T4 2 GPU-h 0.4613 $ +
    6 g, G2 1 GPU-h 0.2306 $ + 125 g (0.0238 $): the dirty G2 is cheaper. Priced on the idle
    candidates alone (s = 0) the T4 would win on carbon (6 g against 125 g)."""
    fleet = SimNodes(
        names=["a", "b", "c", "t4-clean", "g2-dirty"],
        cpu_milli=np.full(5, 8000, dtype=np.int64),
        mem_bytes=np.full(5, 64 * 2**30, dtype=np.int64),
        gpus=np.array([2, 2, 2, 1, 1], dtype=np.int64),
        model=["G2", "G2", "G2", "T4", "G2"],
        zone=["clean", "clean", "clean", "clean", "dirty"],
    )
    trace = SimPods(
        names=["big-0", "big-1", "big-2", "small"],
        cpu_milli=np.full(4, 1000, dtype=np.int64),
        mem_bytes=np.full(4, 2**30, dtype=np.int64),
        gpus=np.array([2, 2, 2, 1], dtype=np.int64),
        gpu_milli=np.full(4, 1000, dtype=np.int64),
        models=[()] * 4,
        qos=["LS"] * 4,
        arrival=T0 + np.array([0.0, 0.1, 0.2, 0.3]) * HOUR,
        duration=np.array([10.0, 10.0, 10.0, 1.0]) * HOUR,
    )
    policy = Policy.model_validate(
        {
            # the fill order off: the docstring prices GPU time and carbon alone
            "prices": {
                "gpuHourIdle": 0.0,
                "gpuHourBusy": 0.41,
                "strandedGpuHour": 4.10,
                "fillOrderGpus": 0.0,
            },
        }
    ).model_copy(update={"power": POWER})
    out = simulate(trace, fleet, policy, CLEAN_DIRTY)
    assert [fleet.names[n] for n in out.node.tolist()[:3]] == ["a", "b", "c"]
    assert fleet.names[int(out.node[3])] == "g2-dirty"


def test_a_long_run_past_the_horizon_is_judged_by_the_trailing_mean() -> None:
    """A 10-day pod at day 15: "swing" is clean for the 48 h forecast horizon only (20 g, after
    two weeks at 300 g), "steady" is 100 g throughout. Told the run time, carbon-greedy judges
    swing by (48 x 20 + 192 x 300) / 240 = 244 g and takes steady; filled with the latest
    reading it would be 20 g. With the class's 1-h expectation swing (20 g) wins."""
    arrive = 15 * 24
    swing = [300.0] * arrive + [20.0] * 48 + [300.0] * 400
    carbon = {"steady": series("steady", [100.0], 800), "swing": series("swing", swing, 800)}
    fleet = nodes(["swing", "steady"])
    trace = pods([float(arrive)], [240.0])
    policy = POLICIES["carbon-greedy"]
    told = simulate(trace, fleet, policy, carbon, known_durations=True)
    assert fleet.zone[int(told.node[0])] == "steady"
    hour = simulate(trace, fleet, policy, carbon)
    assert fleet.zone[int(hour.node[0])] == "swing"
