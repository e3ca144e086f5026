"""A simulated ledger is accounted like live pods: market-based emissions from the policy's
accounting section and avoided emissions against k8s-default's placement (hand-computed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carbon.accounting.report import ReportOptions, build_report
from scheduler.policy.model import Policy, WorkloadClass
from scheduler.sim.ledger import write_ledger
from scheduler.sim.run import SimOptions, build_policies, compare_on
from scheduler.sim.trace import SimNodes
from tests.support.sim import POWER, pods, series

CLEAN_DIRTY = {"clean": series("clean", [50.0]), "dirty": series("dirty", [500.0])}
FLEET = SimNodes(  # the dirty node is the bigger one: k8s-default's LeastAllocated picks it
    names=["small-clean", "big-dirty"],
    cpu_milli=np.array([8000, 64000], dtype=np.int64),
    mem_bytes=np.array([64, 512], dtype=np.int64) * 2**30,
    gpus=np.array([1, 1], dtype=np.int64),
    model=["G2", "G2"],
    zone=["clean", "dirty"],
)


def lowcarb_with_accounting() -> Policy:
    carbon_only = WorkloadClass.model_validate(
        {"prices": {"gpuHourIdle": 0.0}, "expectedDuration": "1h"}
    )
    return Policy.model_validate(
        {
            "classes": {"default": carbon_only},
            "accounting": {
                "marketFactors": {"clean": 10.0},  # a contract in the clean zone
                "residualMix": {"dirty": 600.0},
                "prometheus": {"url": "http://127.0.0.1:9"},  # must never be queried here
            },
        }
    )


def totals(path: Path) -> dict[str, float]:
    body = build_report(path, ReportOptions(group_by=("zone",), format="json"))
    return dict(json.loads(body)["totals"])


def test_simulated_ledger_carries_market_based_and_avoided_emissions(tmp_path: Path) -> None:
    trace = pods([0.0], [1.0])  # one 1-GPU pod for an hour: 250 W, PUE 1 -> 0.25 kWh
    policies = build_policies(POWER, lowcarb_with_accounting())
    c = compare_on(
        SimOptions(policies=("lowcarb",)), trace, FLEET, CLEAN_DIRTY, POWER, policies=policies
    )
    assert write_ledger(c, "lowcarb", tmp_path / "lowcarb.db") == 1
    t = totals(tmp_path / "lowcarb.db")
    assert t["co2e_location_kg"] == pytest.approx(0.25 * 50 / 1000)  # clean zone
    assert t["co2e_market_kg"] == pytest.approx(0.25 * 10 / 1000)  # its contract
    assert t["counterfactual_kg"] == pytest.approx(0.25 * 500 / 1000)  # k8s-default: dirty
    assert t["avoided_kg"] == pytest.approx(0.25 * (500 - 50) / 1000)
    # the baseline's own ledger: residual mix in the dirty zone, nothing avoided
    assert write_ledger(c, "k8s-default", tmp_path / "k8s.db") == 1
    t = totals(tmp_path / "k8s.db")
    assert t["co2e_location_kg"] == pytest.approx(0.25 * 500 / 1000)
    assert t["co2e_market_kg"] == pytest.approx(0.25 * 600 / 1000)
    assert t["avoided_kg"] == pytest.approx(0.0, abs=1e-12)


def test_a_held_pod_counts_the_gates_saving_once(tmp_path: Path) -> None:
    # one zone, dirty now and clean in hour 3: the batch pod is held there by lowcarb-shift
    s = {"a": series("a", [500.0, 500.0, 500.0, 50.0, 500.0, 500.0])}
    fleet = SimNodes(
        names=["n0"],
        cpu_milli=np.array([8000], dtype=np.int64),
        mem_bytes=np.array([64 * 2**30], dtype=np.int64),
        gpus=np.array([1], dtype=np.int64),
        model=["G2"],
        zone=["a"],
    )
    trace = pods([0.0], [1.0], qos="BE")
    policies = build_policies(POWER, lowcarb_with_accounting())
    opts = SimOptions(slack_h=4.0, policies=("lowcarb-shift",))
    c = compare_on(opts, trace, fleet, s, POWER, policies=policies)
    assert c.runs["lowcarb-shift"].metrics["pods_held"] == 1
    write_ledger(c, "lowcarb-shift", tmp_path / "shift.db")
    t = totals(tmp_path / "shift.db")
    assert t["co2e_location_kg"] == pytest.approx(0.25 * 50 / 1000)
    assert t["counterfactual_kg"] == pytest.approx(0.25 * 500 / 1000)  # no hold, same zone
    assert t["avoided_kg"] == pytest.approx(0.25 * 450 / 1000)
