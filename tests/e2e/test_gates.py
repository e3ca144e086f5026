"""Temporal shifting through the real API server: lowcarb's gate controller (inside ``lowcarb
serve``, cluster mode) holds pods gated with ``lowcarb.dev/carbon-window`` and removes only its
gate at the right moment; kube-scheduler then schedules them through lowcarb.

The pods were created at session start (``gates_scenario.py``); these checks run once the clock
has moved past each release. The controller ticks every 30 s, so a release lands within one tick
after its moment (planned start or latest safe start minus the controller's 60 s "now" window).
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.e2e.e2e_support import Session, assert_accounted, gate_rows
from tests.e2e.gates_scenario import (
    MIN_HOLD_S,
    OTHER_GATE,
    SLACK_S,
    TICK_S,
    GateScenario,
    lowcarb_events,
    released,
    wait_event,
)
from tests.e2e.kubeapi import KubeApi
from tests.e2e.objects import node_of


def gate_reason(session: Session, uid: str) -> str:
    rows: dict[str, dict[str, Any]] = {}
    for path in session.ledgers:
        rows.update(
            {u: r for u, r in gate_rows(path).items() if r["reason"].startswith("released:")}
        )
    return str(rows.get(uid, {}).get("reason", ""))


def test_a_run_that_cannot_fit_its_deadline_is_released_at_once(
    scenario: GateScenario, api: KubeApi, session_state: Session
) -> None:
    at = released(scenario, "tight", scenario.created_at + 30)
    assert at - scenario.created_at < 10
    note = wait_event(api, scenario.namespace, "tight", "CarbonRelease")
    assert "does not fit before the deadline" in note
    assert_accounted(api, session_state.ledgers, scenario.namespace, ["tight"], timeout=30)


def test_held_while_a_cleaner_hour_is_forecast_and_released_at_the_planned_hour(
    scenario: GateScenario, api: KubeApi, session_state: Session
) -> None:
    at = released(scenario, "planned", scenario.clean_at + TICK_S)
    # never before the plan (minus the controller's 60 s window), at most a tick or so after
    assert scenario.clean_at - MIN_HOLD_S - 1 <= at <= scenario.clean_at + SLACK_S, (
        at - scenario.clean_at
    )
    hold = wait_event(api, scenario.namespace, "planned", "CarbonHold")
    found = re.fullmatch(
        r"held until \d\d:\d\dZ: forecast 80 vs (\d+) gCO2e/kWh now, -(\d+)%", hold
    )
    assert found, hold
    # now = the mean over the next 10 minutes: some of them at 400, the rest at 80
    assert 80 < int(found[1]) < 400 and int(found[2]) >= 10, hold
    note = wait_event(api, scenario.namespace, "planned", "CarbonRelease")
    pattern = r"released at the planned cleaner hour: forecast (\d+) gCO2e/kWh vs (\d+) when held"
    found = re.fullmatch(pattern, note)
    # the forecast mean over the run from the release: at most its first minute still at 400
    assert found and 80 <= int(found[1]) < int(found[2]), note
    pods = assert_accounted(api, session_state.ledgers, scenario.namespace, ["planned"], timeout=30)
    assert node_of(pods["planned"]).startswith("gate-planned-")
    assert gate_reason(session_state, pods["planned"]["metadata"]["uid"]) == "released: planned"


def test_released_at_its_latest_safe_start_when_the_cleanest_hour_is_later(
    scenario: GateScenario, api: KubeApi, session_state: Session
) -> None:
    at = released(scenario, "latest", scenario.latest_start + TICK_S)
    assert scenario.latest_start - MIN_HOLD_S - 1 <= at <= scenario.latest_start + SLACK_S, (
        at - scenario.latest_start
    )
    hold = wait_event(api, scenario.namespace, "latest", "CarbonHold")
    assert hold.startswith("held until"), hold
    note = wait_event(api, scenario.namespace, "latest", "CarbonRelease")
    assert note.startswith("released at the latest safe start"), note
    pods = assert_accounted(api, session_state.ledgers, scenario.namespace, ["latest"], timeout=30)
    assert gate_reason(session_state, pods["latest"]["metadata"]["uid"]) == "released: latest-start"


def test_someone_elses_gate_is_never_touched(scenario: GateScenario, api: KubeApi) -> None:
    released(scenario, "mixed", scenario.latest_start + TICK_S)
    time.sleep(1.0)
    mixed = api.pod(scenario.namespace, "mixed")
    assert [g["name"] for g in mixed["spec"]["schedulingGates"]] == [OTHER_GATE]
    assert not node_of(mixed)
    other = api.pod(scenario.namespace, "other")
    assert [g["name"] for g in other["spec"]["schedulingGates"]] == [OTHER_GATE]
    assert not node_of(other)
    assert lowcarb_events(api, scenario.namespace, "other") == []
    # metadata untouched as well: only the creator's generation, no lowcarb annotations
    assert other["metadata"]["generation"] == 1
    assert set(other["metadata"]["annotations"]) == {
        "lowcarb.dev/deadline",
        "lowcarb.dev/expected-duration",
    }
