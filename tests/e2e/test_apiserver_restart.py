"""kube-apiserver restarted under a running lowcarb (A) and kube-schedulers: their watches break,
reconnect (relisting where the resourceVersion is gone) and decisions stay right. The probes use
GPU fractions, which only lowcarb accounts (kube-scheduler sees 4 time-sliced "GPUs" per GPU)."""

from __future__ import annotations

import httpx

from tests.e2e.controlplane import ControlPlane
from tests.e2e.e2e_support import Session, assert_accounted, bind_as_lowcarb_did
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb
from tests.e2e.objects import gpu_node, gpu_pod, node_of
from tests.e2e.procs import wait_until

NS = "e2e-apiserver"


def test_decisions_stay_right_across_an_apiserver_restart(
    plane: ControlPlane,
    api: KubeApi,
    lowcarb: Lowcarb,
    schedulers: dict[str, str],
    session_state: Session,
) -> None:
    api.ensure_namespace(NS)
    session_state.namespaces.add(NS)
    pool = "api"
    se = f"{pool}-se"
    api.create_nodes(
        [
            gpu_node(se, region="eu-north-1", gpus=1, replicas=4, pool=pool),
            gpu_node(f"{pool}-fr-1", region="eu-west-3", gpus=1, replicas=4, pool=pool),
            gpu_node(f"{pool}-fr-2", region="eu-west-3", gpus=1, replicas=4, pool=pool),
        ]
    )
    bind_as_lowcarb_did(api, NS, f"{pool}-filler", se, 700, 0)
    session_state.unaccounted.setdefault(NS, set()).add(f"{pool}-filler")

    downtime = plane.restart_apiserver(down_s=2.0)
    session_state.timings["apiserver_restart_s"] = downtime
    wait_until(
        "lowcarb /readyz after the restart",
        lambda: httpx.get(f"{lowcarb.url}/readyz", timeout=2).status_code == 200,
        30,
    )

    # still counted after the restart: 300 milli free on se's only GPU
    api.create_pod(gpu_pod(f"{pool}-400", NS, milli=400, scheduler=schedulers["cache"], pool=pool))
    pods = assert_accounted(api, session_state.ledgers, NS, [f"{pool}-400"], timeout=60)
    assert node_of(pods[f"{pool}-400"]) != se

    # a delete after the restart must reach lowcarb through its re-established pod watch
    api.delete(f"/api/v1/namespaces/{NS}/pods/{pool}-filler")
    wait_until(
        "the filler to be gone",
        lambda: f"{pool}-filler" not in {p["metadata"]["name"] for p in api.pods(NS)},
        30,
    )
    api.create_pod(gpu_pod(f"{pool}-700", NS, milli=700, scheduler=schedulers["cache"], pool=pool))
    pods = assert_accounted(api, session_state.ledgers, NS, [f"{pool}-700"], timeout=60)
    assert node_of(pods[f"{pool}-700"]) == se, "the freed clean GPU was not seen"

    # the node-carrying scheduler came back as well
    api.create_pod(gpu_pod(f"{pool}-full", NS, milli=200, scheduler=schedulers["full"], pool=pool))
    assert_accounted(api, session_state.ledgers, NS, [f"{pool}-full"], timeout=60)
