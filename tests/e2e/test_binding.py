"""Issue 15 item 1, checked against the real API server: does a Binding's metadata.annotations
land on the pod, in the same write that sets spec.nodeName?

Answer found here (kube-apiserver v1.36.2): yes. ``BindingREST.Create`` passes
``binding.Annotations`` to the storage update that sets ``spec.nodeName``, which copies each
annotation onto the pod (overwriting a value under the same key) in one write: the watch event
that shows the pod bound already carries them. It works with exactly the permission lowcarb has
(``pods/binding: create``), and the Binding's ``metadata.uid`` is a precondition (a stale uid
binds nothing). The Binding's labels are copied as well, and the API server adds the node's
``topology.kubernetes.io/region``/``zone`` labels to the pod at bind (PodTopologyLabels admission).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.kubeapi import ApiStatusError, KubeApi
from tests.e2e.objects import gpu_node, gpu_pod

NS = "e2e-binding"
DECISION = json.dumps({"node": "bind-n1", "zone": "SE-SE3", "note": "x" * 2000})


@pytest.fixture(scope="module")
def sa_api(plane: ControlPlane, lowcarb_identity: dict[str, Any]) -> Iterator[KubeApi]:
    """The API as lowcarb's ServiceAccount (deploy/'s RBAC only)."""
    client = plane.client(lowcarb_identity["token"])
    yield client
    client.close()


@pytest.fixture(scope="module", autouse=True)
def _setup(api: KubeApi) -> None:
    api.ensure_namespace(NS)
    api.create_node(gpu_node("bind-n1", region="eu-north-1", pool="binding"))


def binding(name: str, node: str, uid: str | None, annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "annotations": annotations}
    if uid is not None:
        meta["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": meta,
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def test_binding_annotations_are_copied_in_the_same_write(api: KubeApi, sa_api: KubeApi) -> None:
    pod = api.create_pod(
        gpu_pod("annotated", NS, scheduler="nobody", annotations={"lowcarb.dev/gpu-index": "7"})
    )
    uid, rv = pod["metadata"]["uid"], pod["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def watch() -> None:
        params = {
            "watch": "1",
            "resourceVersion": rv,
            "fieldSelector": "metadata.name=annotated",
            "timeoutSeconds": "10",
        }
        with api.http.stream("GET", f"/api/v1/namespaces/{NS}/pods", params=params) as resp:
            ready.set()
            for line in resp.iter_lines():
                if line:
                    event = json.loads(line)
                    seen.append(event)
                    if event["object"]["spec"].get("nodeName"):
                        return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.2)
    sa_api.post(
        f"/api/v1/namespaces/{NS}/pods/annotated/binding",
        binding(
            "annotated",
            "bind-n1",
            uid,
            {"lowcarb.dev/decision": DECISION, "lowcarb.dev/gpu-index": "3"},
        ),
    )
    thread.join(15)
    got = api.pod(NS, "annotated")
    assert got["spec"]["nodeName"] == "bind-n1"
    ann = got["metadata"]["annotations"]
    assert ann["lowcarb.dev/decision"] == DECISION  # 2 KB of JSON, byte for byte
    assert ann["lowcarb.dev/gpu-index"] == "3"  # the Binding's value replaced the pod's
    bound = [e for e in seen if e["object"]["spec"].get("nodeName")]
    assert bound, f"no watch event showed the pod bound: {[e['type'] for e in seen]}"
    first = bound[0]["object"]["metadata"]["annotations"]
    # one write: the first event with nodeName already has the annotations
    assert first.get("lowcarb.dev/decision") == DECISION
    assert first.get("lowcarb.dev/gpu-index") == "3"


def test_binding_with_a_stale_uid_binds_nothing(api: KubeApi, sa_api: KubeApi) -> None:
    api.create_pod(gpu_pod("stale", NS, scheduler="nobody"))
    with pytest.raises(ApiStatusError) as err:
        sa_api.post(
            f"/api/v1/namespaces/{NS}/pods/stale/binding",
            binding("stale", "bind-n1", "00000000-0000-0000-0000-000000000000", {"a": "b"}),
        )
    assert err.value.code == 409
    got = api.pod(NS, "stale")
    assert not got["spec"].get("nodeName")
    assert "a" not in (got["metadata"].get("annotations") or {})


def test_binding_labels_are_copied_too_with_the_nodes_topology(
    api: KubeApi, sa_api: KubeApi
) -> None:
    """v1.36 also copies a Binding's labels, and its PodTopologyLabels admission adds the node's
    topology.kubernetes.io/region and /zone labels to the pod at bind."""
    pod = api.create_pod(gpu_pod("labelled", NS, scheduler="nobody"))
    body = binding("labelled", "bind-n1", pod["metadata"]["uid"], {"k": "v"})
    body["metadata"]["labels"] = {"lowcarb.dev/zone": "SE-SE3"}
    sa_api.post(f"/api/v1/namespaces/{NS}/pods/labelled/binding", body)
    got = api.pod(NS, "labelled")
    assert got["metadata"]["annotations"]["k"] == "v"
    assert got["metadata"]["labels"] == {
        "lowcarb.dev/zone": "SE-SE3",
        "topology.kubernetes.io/region": "eu-north-1",
        "topology.kubernetes.io/zone": "eu-north-1a",
    }
