"""RBAC: our roles grant exactly what lowcarb calls (cluster-wide, and the gate controller's Lease
in its own namespace); the scheduler gets its roles."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.support.deploy import (
    BASE,
    KUSTOMIZE,
    TARGETS,
    Manifest,
    build,
    container,
    find,
    flag_value,
    load_yaml_documents,
)

Permission = tuple[str, str, str]  # (api group, resource, verb)

# Used only while scheduler/kube.py (which owns REQUIRED_PERMISSIONS) does not exist yet.
FALLBACK_PERMISSIONS: list[Permission] = [
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "patch"),
    ("", "pods/binding", "create"),
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
]


def required_permissions() -> set[Permission]:
    """scheduler.kube.client.REQUIRED_PERMISSIONS when that module exists, else the list above."""
    if importlib.util.find_spec("scheduler.kube.client") is None:
        return set(FALLBACK_PERMISSIONS)
    from scheduler.kube import client as kube

    assert hasattr(kube, "REQUIRED_PERMISSIONS"), "scheduler/kube.py must define it"
    return {(str(g), str(r), str(v)) for g, r, v in kube.REQUIRED_PERMISSIONS}


def granted(rules: Iterable[Manifest]) -> set[Permission]:
    """Every (group, resource, verb) a list of PolicyRules grants, expanded."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def test_granted_expands_every_combination() -> None:
    rules = [{"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "delete"]}]
    assert granted(rules) == {
        ("", "pods", "get"),
        ("", "pods", "delete"),
        ("apps", "pods", "get"),
        ("apps", "pods", "delete"),
    }
    assert granted(rules) != set(FALLBACK_PERMISSIONS)


def lowcarb_rules() -> list[Manifest]:
    documents = load_yaml_documents(BASE / "rbac-lowcarb.yaml")
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    assert role["metadata"]["name"] == "lowcarb"
    rules: list[Manifest] = role["rules"]
    return rules


def lease_permissions() -> set[Permission]:
    """What the gate controller's leader election calls (scheduler.gates.lease)."""
    from scheduler.gates.lease import LEASE_PERMISSIONS

    return {(str(g), str(r), str(v)) for g, r, v in LEASE_PERMISSIONS}


def lease_role() -> Manifest:
    documents = load_yaml_documents(BASE / "rbac-lowcarb.yaml")
    (role,) = [d for d in documents if d["kind"] == "Role"]
    assert role["metadata"]["name"] == "lowcarb-gates-leader"
    return role


def test_cluster_role_grants_exactly_what_lowcarb_calls() -> None:
    have, need = granted(lowcarb_rules()), required_permissions()
    assert not need - have, f"missing from ClusterRole lowcarb: {sorted(need - have)}"
    assert not have - need, f"granted but never used: {sorted(have - need)}"


def test_lease_role_grants_exactly_what_leader_election_calls() -> None:
    have, need = granted(lease_role()["rules"]), lease_permissions()
    assert not need - have, f"missing from Role lowcarb-gates-leader: {sorted(need - have)}"
    assert not have - need, f"granted but never used: {sorted(have - need)}"
    assert not need & required_permissions(), "a Lease permission in the ClusterRole too"


def test_lease_role_names_the_lease_wherever_it_can() -> None:
    from scheduler.gates.leader import DEFAULT_LEASE

    for rule in lease_role()["rules"]:
        assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
        if rule["verbs"] == ["create"]:  # the API server cannot limit create by name
            assert "resourceNames" not in rule
        else:
            assert rule["resourceNames"] == [DEFAULT_LEASE], rule


def test_cluster_role_has_no_wildcards_or_name_limits() -> None:
    for rule in lowcarb_rules():
        values = [*rule.get("apiGroups", []), *rule.get("resources", []), *rule["verbs"]]
        assert "*" not in values, f"wildcard in {rule}"
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_rendered_role_is_bound_to_the_pods_service_account(target: Path) -> None:
    objects = build(target)
    role = find(objects, "ClusterRole", "lowcarb")
    assert granted(role["rules"]) == required_permissions()
    deployment = find(objects, "Deployment", "lowcarb")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    binding = find(objects, "ClusterRoleBinding", "lowcarb")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "lowcarb",
    }
    assert {"kind": "ServiceAccount", "name": account, "namespace": namespace} in binding[
        "subjects"
    ]
    find(objects, "ServiceAccount", account)
    # the Lease role lives (and is bound) in the namespace the pods elect in (POD_NAMESPACE)
    leader = find(objects, "Role", "lowcarb-gates-leader")
    assert leader["metadata"]["namespace"] == namespace
    assert granted(leader["rules"]) == lease_permissions()
    leader_binding = find(objects, "RoleBinding", "lowcarb-gates-leader")
    assert leader_binding["metadata"]["namespace"] == namespace
    assert leader_binding["roleRef"]["name"] == "lowcarb-gates-leader"
    assert {"kind": "ServiceAccount", "name": account, "namespace": namespace} in leader_binding[
        "subjects"
    ]


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_gate_controller_elects_on_the_lease_its_role_names(target: Path) -> None:
    objects = build(target)
    deployment = find(objects, "Deployment", "lowcarb")
    lowcarb = container(deployment, "lowcarb")
    args = lowcarb["args"]
    assert "--in-cluster" in args and "--leader-elect" in args  # one gate controller at a time
    env = {e["name"]: e for e in lowcarb.get("env", [])}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "--lease-namespace" not in args
    name = flag_value(args, "--lease-name") if "--lease-name" in args else None
    (named,) = [
        r for r in find(objects, "Role", "lowcarb-gates-leader")["rules"] if "get" in r["verbs"]
    ]
    from scheduler.gates.leader import DEFAULT_LEASE

    assert named["resourceNames"] == [name or DEFAULT_LEASE]


def role_refs(objects: list[Manifest]) -> set[tuple[str, str, str]]:
    """(binding namespace or '', role kind, role name) of every binding rendered."""
    return {
        (obj["metadata"].get("namespace", ""), obj["roleRef"]["kind"], obj["roleRef"]["name"])
        for obj in objects
        if obj["kind"] in {"ClusterRoleBinding", "RoleBinding"}
    }


SCHEDULER_ROLES = {
    ("", "ClusterRole", "system:kube-scheduler"),
    ("", "ClusterRole", "system:volume-scheduler"),
    ("kube-system", "Role", "extension-apiserver-authentication-reader"),
    ("lowcarb-system", "Role", "lowcarb-leader-election"),
}


def test_second_scheduler_gets_the_built_in_scheduler_roles() -> None:
    refs = role_refs(build(BASE))
    assert refs >= SCHEDULER_ROLES
    # kube-rbac-proxy authenticates metrics scrapers through the API.
    assert ("", "ClusterRole", "system:auth-delegator") in refs


def test_extender_only_drops_every_scheduler_permission() -> None:
    refs = role_refs(build(KUSTOMIZE / "overlays" / "extender-only"))
    assert refs == {
        ("", "ClusterRole", "lowcarb"),
        ("lowcarb-system", "Role", "lowcarb-gates-leader"),
    }
