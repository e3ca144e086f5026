"""Fail-open of the gate controller, checked last: lowcarb A releases a gated pod with no forecast
only after its 180 s start-up grace, so these run once A is older than that (the other modules
fill the wait). Pods and series come from ``gates_scenario.py``."""

from __future__ import annotations

import time

from carbon.clock import wall
from tests.e2e.e2e_support import GATE, Session, assert_accounted
from tests.e2e.gates_scenario import (
    GRACE_S,
    SLACK_S,
    TICK_S,
    GateScenario,
    lowcarb_events,
    released,
    wait_event,
)
from tests.e2e.kubeapi import KubeApi
from tests.e2e.objects import PRODUCT_LABEL, gpu_pod
from tests.e2e.procs import wait_until


def test_fail_open_when_no_forecast_exists(
    scenario: GateScenario, api: KubeApi, session_state: Session
) -> None:
    launched = session_state.timings["lowcarb_a_launched"]
    grace_end = max(scenario.created_at, launched + GRACE_S)
    at = released(scenario, "nofc", grace_end + TICK_S + 10)
    # lowcarb waits out its start-up grace for forecasts, then releases at the next pass
    assert launched + GRACE_S <= at <= grace_end + TICK_S + SLACK_S, at - launched
    note = wait_event(api, scenario.namespace, "nofc", "CarbonRelease")
    assert note == "released: no forecast for zones [IN-WE] (fail-open)", note
    assert_accounted(api, session_state.ledgers, scenario.namespace, ["nofc"], timeout=30)


def test_a_zone_seen_first_by_a_gated_pod_is_fetched_before_failing_open(
    scenario: GateScenario, api: KubeApi, session_state: Session
) -> None:
    launched = session_state.timings["lowcarb_a_launched"]
    time.sleep(max(0.0, launched + GRACE_S + 1 - wall()))  # past A's start-up grace
    # E2E-FRESH's series and nodes exist since the scenario started; no pod could use them yet
    api.create_pod(
        gpu_pod(
            "fresh",
            scenario.namespace,
            scheduler=scenario.scheduler,
            node_selector={PRODUCT_LABEL: "NVIDIA-E2E-FRESH"},
            annotations={
                "lowcarb.dev/deadline": "2h",
                "lowcarb.dev/expected-duration": "10m",
            },
            gates=[GATE],
        )
    )
    try:
        first = wait_until(
            "lowcarb's first event about the pod",
            lambda: lowcarb_events(api, scenario.namespace, "fresh")[:1],
            20,
            0.25,
        )
        assert first[0][0] == "CarbonHold", first
        assert scenario.gates_of("fresh") == [GATE]
    finally:
        events = lowcarb_events(api, scenario.namespace, "fresh")
        print(f"\nfresh zone: events {events}")
        api.delete(f"/api/v1/namespaces/{scenario.namespace}/pods/fresh")
