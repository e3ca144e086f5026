"""The energy cost component (scheduler/costs/energy.py): validation of ``prices.energy``, the
time-of-use average over the run window computed by hand, and its place in the node's cost."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.costs.energy import EnergyPrices, compile_energy
from scheduler.demand import PodDemand
from scheduler.policy.validate import validate_text
from scheduler.scoring import Pricing, Step, evaluate
from scheduler.terms.base import Context, TermArgs
from scheduler.terms.carbon import Carbon
from tests.scoring.test_cost import table

LA = {
    "timezone": "America/Los_Angeles",
    "schedule": [
        {"from": "00:00", "to": "16:00", "price": 0.22},
        {"from": "16:00", "to": "21:00", "price": 0.45},
        {"from": "21:00", "to": "00:00", "price": 0.22},  # wraps to midnight
    ],
}


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_time_of_use_mean_over_the_window_by_hand() -> None:
    t = compile_energy(EnergyPrices.model_validate({"default": 0.05, "zones": {"LA": LA}}))
    assert t is not None
    zones = ["LA", "X"]
    # 15:00 local (PST, UTC-8) = 23:00 UTC; runs of 0, 1, 2, 8 and 30 h in LA, 2 h in X
    now = at("2026-01-15T23:00:00+00:00")
    run_h = np.array([0.0, 1.0, 2.0, 8.0, 30.0, 2.0])
    zone = np.array([0, 0, 0, 0, 0, 1])
    got = t.mean_price(zones, zone, now, run_h * 3600)
    day = 16 * 0.22 + 5 * 0.45 + 3 * 0.22  # 6.17 $ per kWh-hour over a day
    want = [
        0.22,  # no run: the price now
        0.22,  # 15:00-16:00
        (0.22 + 0.45) / 2,  # 15:00-17:00
        (1 * 0.22 + 5 * 0.45 + 2 * 0.22) / 8,  # 15:00-23:00
        (day + (1 * 0.22 + 5 * 0.45)) / 30,  # a whole day, then 15:00-21:00 again
        0.05,  # a zone without a price: the default
    ]
    np.testing.assert_allclose(got, want)
    # no zone at all: the default too
    assert t.mean_price(zones, np.array([-1]), now, np.array([3600.0])).tolist() == [0.05]


def test_the_schedule_follows_the_zones_clock_across_daylight_saving() -> None:
    t = compile_energy(EnergyPrices.model_validate({"zones": {"LA": LA}}))
    assert t is not None
    # 16:30 local in winter (UTC-8) and in summer (UTC-7): the peak window both times
    for iso in ("2026-01-15T00:30:00+00:00", "2026-07-15T23:30:00+00:00"):
        assert t.mean_price(["LA"], np.array([0]), at(iso), np.array([600.0])).tolist() == [0.45]


def test_flat_prices_and_absent_section() -> None:
    assert compile_energy(None) is None
    t = compile_energy(EnergyPrices.model_validate({"zones": {"DE": 0.3}}))
    assert t is not None
    got = t.mean_price(["DE", "FR"], np.array([0, 1]), 0.0, np.array([3600.0, 3600.0]))
    assert got.tolist() == [0.3, 0.0]


def test_schedule_gaps_overlaps_and_bad_values_are_named() -> None:
    text = """\
apiVersion: lowcarb.dev/v2
kind: Policy
prices:
  energy:
    zones:
      A:
        schedule:
          - {from: "00:00", to: "16:00", price: 0.2}
          - {from: "17:00", to: "24:00", price: 0.4}
      B:
        timezone: Mars/Olympus
        schedule:
          - {from: "00:00", to: "12:00", price: 0.2}
          - {from: "11:00", to: "24:00", price: -1}
      C: {schedule: [{from: "7:60", to: "24:00", price: 1}]}
"""
    _, issues = validate_text(text, "p.yaml")
    found = {(i.line, i.path): i.message for i in issues}
    assert found[(9, "prices.energy.zones.A.schedule[1]")] == (
        "no price for 16:00-17:00 (after entry 0): windows must cover the whole day"
    )
    assert found[(14, "prices.energy.zones.B.schedule[1]")] == (
        "11:00-12:00 is priced by entries 0 and 1: windows must not overlap"
    )
    assert "unknown time zone 'Mars/Olympus'" in found[(11, "prices.energy.zones.B.timezone")]
    assert found[(14, "prices.energy.zones.B.schedule[1].price")].startswith("must be >= 0")
    assert "prices.energy.zones.C.schedule[0].from" in {i.path for i in issues}
    assert len(issues) == 5, [str(i) for i in issues]


def test_unquoted_times_read_as_base_60_numbers_are_taken_as_times() -> None:
    """YAML 1.1 reads an unquoted 16:00 as 960; that is 16:00 in minutes, so it is accepted."""
    text = (
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nprices:\n  energy:\n    zones:\n      A:\n"
        "        schedule:\n          - {from: 00:00, to: 16:00, price: 0.1}\n"
        "          - {from: 16:00, to: 24:00, price: 0.3}\n"
    )
    policy, issues = validate_text(text, "p.yaml")
    assert issues == [] and policy is not None and policy.prices.energy is not None
    schedule = policy.prices.energy.zones["A"]
    assert not isinstance(schedule, float)
    assert [(w.start, w.end) for w in schedule.schedule] == [("00:00", "16:00"), ("16:00", "24:00")]


def test_energy_adds_kwh_times_price_to_the_cost_and_nothing_without_it() -> None:
    c = Context(
        pod=PodDemand(uid="u", namespace="ns", name="p", gpus=1, gpu_milli=1000),
        table=table(),
        carbon=FixedView({"Z1": 100.0, "Z2": 300.0}),
        power=PowerModel(),
        now_s=0.0,
        duration_s=3600.0,
    )
    steps = [Step(Carbon(), TermArgs())]
    plain = evaluate(c, steps, pricing=Pricing())
    energy = compile_energy(EnergyPrices.model_validate({"zones": {"Z2": 0.5}, "default": 0.1}))
    priced = evaluate(c, steps, pricing=Pricing(energy=energy))
    assert plain.cost is not None and priced.cost is not None
    assert plain.cost.energy_usd is None
    # kWh at PUE 1.2: A100 0.32 kW x 1 h, T4 0.06 kW x 5 h (n0, n2 in Z1 at 0.1; n1 in Z2 at 0.5)
    kwh = np.array([0.384, 0.384, 0.36])
    assert priced.cost.energy_usd is not None and priced.cost.energy_price is not None
    np.testing.assert_allclose(priced.cost.energy_price, [0.1, 0.5, 0.1])
    np.testing.assert_allclose(priced.cost.energy_usd, kwh * [0.1, 0.5, 0.1])
    np.testing.assert_allclose(priced.cost.cost, plain.cost.cost + kwh * [0.1, 0.5, 0.1])
    assert priced.cost.cost[1] > plain.cost.cost[1] == pytest.approx(0.005 + 115.2 * 190e-6)
