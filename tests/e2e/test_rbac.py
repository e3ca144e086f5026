"""lowcarb runs as the ServiceAccount ``deploy/`` ships, with exactly ``rbac-lowcarb.yaml``, on an
API server that enforces ``--authorization-mode=Node,RBAC``; every other e2e module runs with that
identity too. Here: the role in the cluster is the shipped one, the account may do what it lists
and nothing more that matters, and lowcarb itself is serving as that account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.controlplane import ControlPlane
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb


@pytest.fixture(scope="module")
def sa_api(plane: ControlPlane, lowcarb_identity: dict[str, Any]) -> Iterator[KubeApi]:
    client = plane.client(lowcarb_identity["token"])
    yield client
    client.close()


def can(client: KubeApi, verb: str, resource: str, group: str = "", sub: str = "") -> bool:
    review = client.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    "subresource": sub,
                    "namespace": "e2e-rbac",
                }
            },
        },
    )
    return bool(review["status"]["allowed"])


def test_the_cluster_role_is_the_shipped_one(
    api: KubeApi, lowcarb_identity: dict[str, Any]
) -> None:
    docs = {d["kind"]: d for d in lowcarb_identity["docs"]}
    name = docs["ClusterRole"]["metadata"]["name"]
    role = api.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")
    assert role["rules"] == docs["ClusterRole"]["rules"]
    binding = api.get(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/"
        + docs["ClusterRoleBinding"]["metadata"]["name"]
    )
    assert binding["subjects"] == docs["ClusterRoleBinding"]["subjects"]
    # the only binding in the cluster naming lowcarb's account
    subject = docs["ClusterRoleBinding"]["subjects"][0]
    naming = [
        b["metadata"]["name"]
        for kind in ("clusterrolebindings",)
        for b in api.get(f"/apis/rbac.authorization.k8s.io/v1/{kind}")["items"]
        if any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == subject["name"]
            and s.get("namespace") == subject["namespace"]
            for s in b.get("subjects") or []
        )
    ]
    assert naming == [docs["ClusterRoleBinding"]["metadata"]["name"]]


def test_the_account_may_do_exactly_what_the_role_lists(
    sa_api: KubeApi, lowcarb_identity: dict[str, Any]
) -> None:
    role = next(d for d in lowcarb_identity["docs"] if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                res, _, sub = resource.partition("/")
                for verb in rule["verbs"]:
                    assert can(sa_api, verb, res, group, sub), (verb, group, resource)
    denied = [
        ("delete", "pods", "", ""),
        ("create", "pods", "", ""),
        ("update", "pods", "", ""),
        ("patch", "nodes", "", ""),
        ("create", "nodes", "", ""),
        ("get", "secrets", "", ""),
        ("list", "configmaps", "", ""),
        ("patch", "pods", "", "status"),
        ("create", "pods", "", "eviction"),
        ("update", "leases", "coordination.k8s.io", ""),
    ]
    for verb, res, group, sub in denied:
        assert not can(sa_api, verb, res, group, sub), (verb, group, res, sub)


def test_lowcarb_serves_as_its_service_account(
    lowcarb: Lowcarb, lowcarb_identity: dict[str, Any]
) -> None:
    config = yaml.safe_load(lowcarb.kubeconfig.read_text())
    assert config["users"][0]["user"]["token"] == lowcarb_identity["token"]
    # /readyz is 200 only once its node and pod caches synced: list+watch worked as that account
    assert httpx.get(f"{lowcarb.url}/readyz", timeout=5).status_code == 200
