"""Each simulated run's cost in the one currency (``cost_usd``), on a two-node fleet whose
answer is computed by hand: a 60 W T4 in a 50 g/kWh zone and a 250 W G2 in a 500 g/kWh zone,
two 1-GPU pods of one trace-hour arriving together, placed by carbon-greedy: the first on the
clean T4 (half speed: 2 h, 0.12 kWh, 6 g), the second on the dirty G2 (1 h, 0.25 kWh, 125 g)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scheduler.policy.model import Policy
from scheduler.sim.run import Comparison, SimOptions, build_policies, compare_on
from scheduler.sim.trace import SimPods
from tests.sim.test_sim_metrics import CLEAN_DIRTY, t4_and_g2
from tests.support.sim import HOUR, POWER, pods

GRAMS = 0.12 * 50 + 0.25 * 500  # 131 g


def compared(prices: dict[str, Any] | None = None, trace: SimPods | None = None) -> Comparison:
    """Every policy on the two-node fleet, the lowcarb policy with ``prices``."""
    policy = Policy.model_validate({"prices": prices} if prices else {})
    trace = trace if trace is not None else pods([0.0, 0.0], [1.0, 1.0])
    policies = build_policies(POWER, policy)
    return compare_on(SimOptions(), trace, t4_and_g2(), CLEAN_DIRTY, POWER, policies=policies)


def carbon_greedy_metrics(prices: dict[str, Any] | None = None) -> dict[str, float]:
    run = compared(prices).runs["carbon-greedy"]
    assert run.placements.runtime.tolist() == [2 * HOUR, HOUR]  # the placement described above
    return run.metrics


def test_default_prices_count_carbon_and_gpu_time() -> None:
    m = carbon_greedy_metrics()
    assert m["carbon_usd"] == pytest.approx(GRAMS / 1e6 * 190.0)  # EPA $190 per tonne
    assert m["gpu_usd"] == pytest.approx(3.0 * 0.005)  # 3 GPU-hours at the flat $0.005
    assert m["cost_usd"] == pytest.approx(m["carbon_usd"] + m["gpu_usd"])
    assert "energy_usd" not in m  # the default policy does not price energy


def test_gpu_time_is_priced_at_the_scarcity_each_pod_was_placed_at() -> None:
    prices = {"gpuHourIdle": 0.01, "gpuHourBusy": 1.0, "scarcityExponent": 1.0}
    run = compared(prices).runs["carbon-greedy"]
    # the first pod finds the fleet empty, the second finds one of its two GPUs taken
    assert run.placements.share.tolist() == [0.0, 0.5]
    # T4: 2 h at $0.01; G2: 1 h at 0.01 + (1.0 - 0.01) x 0.5 = $0.505
    assert run.metrics["gpu_usd"] == pytest.approx(2 * 0.01 + 0.505)


def test_energy_is_priced_over_each_pods_run_when_the_policy_prices_it() -> None:
    half_hour_peak = {
        "timezone": "UTC",
        "schedule": [
            {"from": "00:00", "to": "00:30", "price": 1.0},
            {"from": "00:30", "to": "24:00", "price": 0.0},
        ],
    }
    m = carbon_greedy_metrics({"energy": {"zones": {"clean": 0.10, "dirty": half_hour_peak}}})
    # T4: 0.12 kWh at a flat $0.10; G2 from 00:00 to 01:00: half the hour at $1, half at $0
    assert m["energy_usd"] == pytest.approx(0.12 * 0.10 + 0.25 * 0.5)
    assert m["cost_usd"] == pytest.approx(m["carbon_usd"] + m["gpu_usd"] + m["energy_usd"])


def test_every_policy_is_priced_with_the_lowcarb_policys_prices() -> None:
    c = compared({"carbonPerTonne": 1000.0})
    for name, run in c.runs.items():
        m = run.metrics
        assert m["carbon_usd"] == pytest.approx(m["tco2e"] * 1000.0), name
    summary = c.summary()["policies"]
    assert all({"carbon_usd", "gpu_usd", "cost_usd"} <= set(summary[n]) for n in c.runs)


def test_an_unplaced_pod_costs_nothing() -> None:
    # a third pod asks for 2 GPUs on a fleet of 1-GPU nodes: it never fits and costs nothing
    trace = pods([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    trace.gpus[2] = 2
    run = compared(trace=trace).runs["carbon-greedy"]
    assert run.placements.placed.tolist() == [True, True, False]
    assert np.isnan(run.placements.share[2])
    assert run.metrics["gpu_usd"] == pytest.approx(3.0 * 0.005)
    assert run.metrics["carbon_usd"] == pytest.approx(GRAMS / 1e6 * 190.0)
