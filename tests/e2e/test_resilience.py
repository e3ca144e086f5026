"""lowcarb killed and restarted under the real scheduler (``ignorable: true``, bind on).

This module runs its own lowcarb ``B`` (same policy and ServiceAccount, own ledger) behind its own
kube-scheduler (profile ``lowcarb-b``), so killing it never disturbs lowcarb A, whose gate
controller is holding the temporal-shift pods meanwhile. B's gate controller runs too, as in the
shipped HA overlay (two replicas, two controllers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon.clock import wall
from tests.e2e.controlplane import ControlPlane, shipped_extender
from tests.e2e.e2e_support import (
    Session,
    assert_accounted,
    bind_as_lowcarb_did,
    decision_of,
    gpu_load,
    new_lowcarb,
    placement_rows,
)
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb
from tests.e2e.objects import gpu_node, gpu_pod, node_of, wait_bound
from tests.e2e.procs import wait_until

NS = "e2e-resilience"
SCHEDULER_B = "lowcarb-b"


@pytest.fixture(scope="module")
def lowcarb_b(
    request: pytest.FixtureRequest,
    plane: ControlPlane,
    api: KubeApi,
    workdir: Path,
    lowcarb_identity: dict[str, Any],
    policy_file: Path,
    session_state: Session,
) -> Iterator[Lowcarb]:
    api.ensure_namespace(NS)
    session_state.namespaces.add(NS)
    lc = new_lowcarb(
        request, workdir, lowcarb_identity["kubeconfig"], policy_file, "lowcarb-b", session_state
    )
    lc.start()
    plane.start_scheduler(
        "kube-scheduler-b", [SCHEDULER_B], [shipped_extender(lc.url, node_cache_capable=True)]
    )
    try:
        yield lc
    finally:
        plane.stop_scheduler("kube-scheduler-b")
        lc.stop()


def test_killed_mid_burst_scheduling_goes_on_and_a_restart_resumes(
    api: KubeApi, lowcarb_b: Lowcarb, session_state: Session
) -> None:
    pool = "kill"
    api.create_nodes(
        [
            gpu_node(f"{pool}-se-1", region="eu-north-1", pool=pool),
            gpu_node(f"{pool}-se-2", region="eu-north-1", pool=pool),
            gpu_node(f"{pool}-fr-1", region="eu-west-3", pool=pool),
            gpu_node(f"{pool}-de-1", region="eu-central-1", pool=pool),
        ]
    )
    burst = [f"{pool}-{i:02d}" for i in range(24)]
    for name in burst:
        api.create_pod(gpu_pod(name, NS, scheduler=SCHEDULER_B, pool=pool))

    def some_bound() -> bool:
        return sum(1 for p in api.pods(NS) if node_of(p) and p["metadata"]["name"] in burst) >= 6

    wait_until("6 pods of the burst bound through lowcarb B", some_bound, 30, 0.05)
    lowcarb_b.kill9()
    killed_at = wall()
    # pods created while lowcarb is down (the burst itself may finish before the kill lands)
    down = [f"{pool}-down-{i}" for i in range(4)]
    for name in down:
        api.create_pod(gpu_pod(name, NS, scheduler=SCHEDULER_B, pool=pool))
    pods = wait_bound(api, NS, burst + down, timeout=60)  # kube-scheduler goes on without it
    per_node = {n: 0 for n in (f"{pool}-se-1", f"{pool}-se-2", f"{pool}-fr-1", f"{pool}-de-1")}
    for pod in pods.values():
        per_node[node_of(pod)] += 1
    assert max(per_node.values()) <= 8, per_node  # whole GPUs: kube-scheduler still counts them
    undecided = {n for n, p in pods.items() if decision_of(p) is None}
    assert set(down) <= undecided, "a pod created after the kill got lowcarb's decision"
    # bound while lowcarb was down (or killed between its Binding and its annotation patch)
    session_state.unaccounted.setdefault(NS, set()).update(undecided)

    lowcarb_b.start()  # same port, same ledger
    after = [f"{pool}-after-{i}" for i in range(3)]
    for name in after:
        api.create_pod(gpu_pod(name, NS, scheduler=SCHEDULER_B, pool=pool))
        wait_bound(api, NS, [name])
    resumed = assert_accounted(api, session_state.ledgers, NS, after)
    assert all(decision_of(p) for p in resumed.values())
    rows = placement_rows(lowcarb_b.ledger) if lowcarb_b.ledger else {}
    decided = [p for n, p in pods.items() if n not in undecided]
    lost = [p["metadata"]["name"] for p in decided if p["metadata"]["uid"] not in rows]
    # the pods lowcarb had answered before the kill keep their rows (item 2 of issue 15 is
    # about Bindings created just before a kill, which this burst may or may not hit)
    print(
        f"\nkill: {len(pods) - len(undecided)} decided before the kill at {killed_at:.0f}, "
        f"{len(undecided)} bound without lowcarb, decided but no ledger row: {lost}"
    )


def test_a_restart_rebuilds_shared_gpu_state_from_the_annotations(
    api: KubeApi, lowcarb_b: Lowcarb, session_state: Session
) -> None:
    pool = "rebuild"
    se = f"{pool}-se"
    api.create_nodes(
        [
            gpu_node(se, region="eu-north-1", gpus=2, replicas=4, pool=pool),
            gpu_node(f"{pool}-fr-1", region="eu-west-3", gpus=2, replicas=4, pool=pool),
            gpu_node(f"{pool}-fr-2", region="eu-west-3", gpus=2, replicas=4, pool=pool),
        ]
    )
    # 300 milli on each of se's two GPUs, recorded as lowcarb records it; a best fit that
    # ignored the annotations would see both on one GPU and the other GPU free
    bind_as_lowcarb_did(api, NS, f"{pool}-old-0", se, 300, 0)
    bind_as_lowcarb_did(api, NS, f"{pool}-old-1", se, 300, 1)
    session_state.unaccounted.setdefault(NS, set()).update({f"{pool}-old-0", f"{pool}-old-1"})
    lowcarb_b.kill9()
    lowcarb_b.start()
    api.create_pod(gpu_pod(f"{pool}-800", NS, milli=800, scheduler=SCHEDULER_B, pool=pool))
    big = wait_bound(api, NS, [f"{pool}-800"])[f"{pool}-800"]
    assert node_of(big) != se, "800 milli placed on a GPU that has 700 free"
    api.create_pod(gpu_pod(f"{pool}-700", NS, milli=700, scheduler=SCHEDULER_B, pool=pool))
    fits = wait_bound(api, NS, [f"{pool}-700"])[f"{pool}-700"]
    assert node_of(fits) == se, "700 milli fits the cleanest node"
    load = gpu_load(p for p in api.pods(NS) if p["metadata"]["name"].startswith(pool))
    assert load[(se, 0)] + load[(se, 1)] == 1300 and max(load.values()) <= 1000, load
    assert_accounted(api, session_state.ledgers, NS, [f"{pool}-800", f"{pool}-700"])


def test_lowcarb_down_at_start_up_is_skipped_then_used(
    api: KubeApi, lowcarb_b: Lowcarb, session_state: Session
) -> None:
    """Down (not listening at all) and then back: pods scheduled meanwhile, then through it."""
    pool = "down"
    api.create_nodes(
        [
            gpu_node(f"{pool}-se", region="eu-north-1", pool=pool),
            gpu_node(f"{pool}-de", region="eu-central-1", pool=pool),
        ]
    )
    lowcarb_b.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{lowcarb_b.url}/healthz", timeout=1)
    api.create_pod(gpu_pod(f"{pool}-while-down", NS, scheduler=SCHEDULER_B, pool=pool))
    wait_bound(api, NS, [f"{pool}-while-down"])
    session_state.unaccounted.setdefault(NS, set()).add(f"{pool}-while-down")
    lowcarb_b.start()
    api.create_pod(gpu_pod(f"{pool}-back", NS, scheduler=SCHEDULER_B, pool=pool))
    pods = assert_accounted(api, session_state.ledgers, NS, [f"{pool}-back"])
    assert node_of(pods[f"{pool}-back"]) == f"{pool}-se"
