"""The Kubernetes objects of the e2e scenarios (GPU nodes as GPU Feature Discovery and the device
plugin describe them, GPU pods with lowcarb's annotations) and waits on what the scheduler did."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from tests.e2e.kubeapi import KubeApi
from tests.e2e.procs import wait_until

POOL_LABEL = "e2e.lowcarb.dev/pool"
REGION_LABEL = "topology.kubernetes.io/region"
PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU = "nvidia.com/gpu"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def gpu_node(
    name: str,
    *,
    region: str,
    product: str = "NVIDIA-A100-SXM4-80GB",
    gpus: int = 8,
    replicas: int = 1,
    memory_mib: int = 81920,
    pool: str = "",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A GPU node as GPU Feature Discovery and the device plugin would describe it."""
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        REGION_LABEL: region,
        "topology.kubernetes.io/zone": f"{region}a",
        PRODUCT_LABEL: product,
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.count": str(gpus),
    }
    if replicas > 1:
        all_labels["nvidia.com/gpu.replicas"] = str(replicas)
    if pool:
        all_labels[POOL_LABEL] = pool
    all_labels.update(labels or {})
    resources = {"cpu": "96", "memory": "1024Gi", "pods": "110", GPU: str(gpus * replicas)}
    if gpus == 0:
        del resources[GPU]
    return {
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "e2e node",
                    "lastHeartbeatTime": _now_rfc3339(),
                    "lastTransitionTime": _now_rfc3339(),
                }
            ],
        },
    }


def gpu_pod(
    name: str,
    namespace: str,
    *,
    gpus: int = 1,
    milli: int | None = None,
    scheduler: str = "lowcarb",
    pool: str | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    gates: Iterable[str] = (),
) -> dict[str, Any]:
    """A pod asking for ``gpus`` GPUs (``milli`` of one shared GPU), scheduled by ``scheduler``."""
    ann = dict(annotations or {})
    if milli is not None:
        ann["lowcarb.dev/gpu-milli"] = str(milli)
    selector = dict(node_selector or {})
    if pool:
        selector[POOL_LABEL] = pool
    limits = {GPU: str(gpus)} if gpus else {}
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [
            {
                "name": "main",
                "image": PAUSE_IMAGE,
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi", **limits},
                    "limits": limits,
                },
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if selector:
        spec["nodeSelector"] = selector
    gate_list = [{"name": g} for g in gates]
    if gate_list:
        spec["schedulingGates"] = gate_list
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": ann,
        },
        "spec": spec,
    }


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- waiting on pods ----------------------------------------------------------------------------


def node_of(pod: Mapping[str, Any]) -> str:
    return str(pod.get("spec", {}).get("nodeName") or "")


def wait_bound(
    api: KubeApi, namespace: str, names: Iterable[str], timeout: float = 60
) -> dict[str, dict[str, Any]]:
    """Wait until every named pod has ``spec.nodeName``; return them by name."""
    wanted = set(names)

    def check() -> dict[str, dict[str, Any]] | None:
        pods = {p["metadata"]["name"]: p for p in api.pods(namespace)}
        if all(node_of(pods.get(n, {})) for n in wanted):
            return {n: pods[n] for n in wanted}
        return None

    try:
        return wait_until(f"pods {sorted(wanted)} to be bound", check, timeout, interval=0.2)
    except TimeoutError:
        pods = {p["metadata"]["name"]: p for p in api.pods(namespace)}
        unbound = sorted(n for n in wanted if not node_of(pods.get(n, {})))
        reasons = {n: scheduling_messages(api, namespace, n)[-1:] for n in unbound[:5]}
        raise TimeoutError(f"pods not bound after {timeout:.0f}s: {unbound}; {reasons}") from None


def scheduling_messages(api: KubeApi, namespace: str, pod: str) -> list[str]:
    """Messages of the FailedScheduling events of ``pod``, oldest first."""
    events = [e for e in api.events(namespace, pod) if e.get("reason") == "FailedScheduling"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [str(e.get("message", "")) for e in events]


def unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The PodScheduled=False condition's message when the pod is Unschedulable."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message", ""))
    return None
