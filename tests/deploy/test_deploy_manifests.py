"""Manifests: Kubernetes schema validity, kustomize builds, security and wiring of every target."""

from __future__ import annotations

import copy
import re
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest

from tests.support.deploy import (
    BASE,
    DEPLOY,
    KUBE_VERSION,
    KUSTOMIZE,
    REPO,
    TARGETS,
    Manifest,
    build,
    container,
    find,
    flag_value,
    load_yaml_documents,
    pod_containers,
)

EXTENDER_ONLY = KUSTOMIZE / "overlays" / "extender-only"
DEV = KUSTOMIZE / "overlays" / "dev"
HA = KUSTOMIZE / "overlays" / "ha"

# (copy inside the kustomize root, original): kustomize cannot read outside its root.
COPIES = [
    (BASE / "files" / "kube-scheduler-config.yaml", DEPLOY / "kube-scheduler-config.yaml"),
    (BASE / "files" / "default.yaml", REPO / "policies" / "default.yaml"),
]


def validate(obj: Manifest) -> None:
    """Strict schema validation (unknown fields are errors) for the oldest supported version."""
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        raise AssertionError(f"{name}: {where}: {error.message}") from error


def resource_files(directory: Path) -> list[Path]:
    """The plain manifest files a kustomization lists under resources (not directories)."""
    (kustomization,) = load_yaml_documents(directory / "kustomization.yaml")
    paths = [directory / entry for entry in kustomization.get("resources", [])]
    return [p for p in paths if p.is_file()]


@pytest.mark.parametrize(("copy_path", "original"), COPIES, ids=lambda p: p.name)
def test_copies_inside_kustomize_root_match_originals(copy_path: Path, original: Path) -> None:
    assert original.is_file(), f"{original} is missing"
    assert copy_path.read_bytes() == original.read_bytes(), (
        f"{copy_path.relative_to(REPO)} drifted from {original.relative_to(REPO)}: "
        f"run cp {original.relative_to(REPO)} {copy_path.relative_to(REPO)}"
    )


@pytest.mark.parametrize(
    "path",
    [p for target in TARGETS for p in resource_files(target)],
    ids=lambda p: str(p.relative_to(KUSTOMIZE)),
)
def test_every_manifest_file_validates(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{path} holds no object"
    for obj in documents:
        validate(obj)


def test_validation_catches_a_misspelt_field() -> None:
    (deployment,) = load_yaml_documents(BASE / "deployment.yaml")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate(broken)


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_build_renders_valid_objects(target: Path) -> None:
    objects = build(target)
    assert objects
    for obj in objects:
        validate(obj)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "an object is rendered twice"
    # TLS material is referenced, never committed.
    assert not [o for o in objects if o["kind"] == "Secret"]


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_pod_is_locked_down(target: Path) -> None:
    objects = build(target)
    deployment = find(objects, "Deployment", "lowcarb")
    pod = deployment["spec"]["template"]["spec"]
    namespace = find(objects, "Namespace", deployment["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    find(objects, "PriorityClass", pod["priorityClassName"])
    if target != HA:
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for item in pod_containers(deployment):
        context = item["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, item["name"]
        assert context["allowPrivilegeEscalation"] is False, item["name"]
        assert context["capabilities"]["drop"] == ["ALL"], item["name"]
        assert "add" not in context["capabilities"], item["name"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(item["resources"][kind]), (item["name"], kind)
        assert "livenessProbe" in item and "readinessProbe" in item, item["name"]
        assert ":" in item["image"] and not item["image"].endswith(":latest"), item["image"]


def mounted_dir(item: Manifest, path: str) -> Manifest:
    """The volume mount of a container that holds PATH (longest matching mount path)."""
    mounts = [m for m in item["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on the read-only root file system of {item['name']}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_lowcarb_files_are_mounted(target: Path) -> None:
    objects = build(target)
    deployment = find(objects, "Deployment", "lowcarb")
    lowcarb = container(deployment, "lowcarb")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    args = lowcarb["args"]

    policy = str(flag_value(args, "--policy"))
    mount = mounted_dir(lowcarb, policy)
    # No subPath: a subPath mount never sees ConfigMap updates, so hot reload would not work.
    assert "subPath" not in mount and mount["readOnly"] is True
    configmap = find(objects, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    # No hash suffix: a policy edit must reach the running pod, not replace it.
    assert configmap["metadata"]["name"] == "lowcarb-policy"
    assert PurePosixPath(policy).name in configmap["data"]

    ledger = str(flag_value(args, "--ledger"))
    if target == HA:  # PostgreSQL: no file, no volume (test_ha_overlay_... checks the Secret)
        assert ledger == "$(LOWCARB_LEDGER_URL)"
        assert "ledger" not in volumes
        assert "emptyDir" in volumes[mounted_dir(lowcarb, "/tmp/x")["name"]]
        return
    ledger_mount = mounted_dir(lowcarb, ledger)
    assert not ledger_mount.get("readOnly", False)
    volume = volumes[ledger_mount["name"]]
    if "persistentVolumeClaim" in volume:
        find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    else:
        assert target == DEV, "only the dev overlay keeps the ledger in an emptyDir"
        assert "emptyDir" in volume
    assert "emptyDir" in volumes[mounted_dir(lowcarb, "/tmp/x")["name"]]


def test_base_exposes_only_metrics() -> None:
    objects = build(BASE)
    deployment = find(objects, "Deployment", "lowcarb")
    lowcarb = container(deployment, "lowcarb")
    assert flag_value(lowcarb["args"], "--host") == "127.0.0.1"
    assert "ports" not in lowcarb, "the sidecar must not declare a pod port"
    assert "--in-cluster" in lowcarb["args"]
    assert "/healthz" in lowcarb["livenessProbe"]["exec"]["command"][-1]
    assert "/readyz" in lowcarb["readinessProbe"]["exec"]["command"][-1]

    pod_ports = {
        port["name"]: port["containerPort"]
        for item in pod_containers(deployment)
        for port in item.get("ports", [])
    }
    services = [o for o in objects if o["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["lowcarb-metrics"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in pod_ports, port
            assert pod_ports[port["targetPort"]] != 8888

    proxy = container(deployment, "kube-rbac-proxy")
    assert flag_value(proxy["args"], "--upstream") == "http://127.0.0.1:8888/"
    assert flag_value(proxy["args"], "--allow-paths") == "/metrics"


@pytest.mark.parametrize("target", [BASE, DEV], ids=lambda p: p.name)
def test_lowcarb_is_ready_before_kube_scheduler_starts(target: Path) -> None:
    deployment = find(build(target), "Deployment", "lowcarb")
    spec = deployment["spec"]["template"]["spec"]
    # A native sidecar: an init container that keeps running; the kubelet starts the
    # regular containers (kube-scheduler) only after its startup probe has passed.
    (sidecar,) = [c for c in spec["initContainers"] if c["name"] == "lowcarb"]
    assert sidecar["restartPolicy"] == "Always"
    assert "/readyz" in sidecar["startupProbe"]["exec"]["command"][-1]
    assert "lowcarb" not in [c["name"] for c in spec["containers"]]
    assert "kube-scheduler" in [c["name"] for c in spec["containers"]]


def test_kube_scheduler_image_is_a_pinned_supported_version() -> None:
    deployment = find(build(BASE), "Deployment", "lowcarb")
    image = container(deployment, "kube-scheduler")["image"]
    match = re.fullmatch(r"registry\.k8s\.io/kube-scheduler:v1\.(\d+)\.(\d+)", image)
    assert match, f"{image} must be registry.k8s.io/kube-scheduler:v1.MINOR.PATCH"
    assert int(match.group(1)) >= 30


def test_extender_only_serves_mutual_tls_on_its_service() -> None:
    objects = build(EXTENDER_ONLY)
    deployment = find(objects, "Deployment", "lowcarb")
    containers = pod_containers(deployment)
    assert [c["name"] for c in containers] == ["lowcarb"]
    lowcarb = containers[0]
    assert "restartPolicy" not in lowcarb, "alone, lowcarb is a regular container"
    base_image = container(find(build(BASE), "Deployment", "lowcarb"), "lowcarb")["image"]
    assert lowcarb["image"] == base_image, "set the same lowcarb image in base and overlay"
    args = lowcarb["args"]
    assert flag_value(args, "--host") == "0.0.0.0"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secrets = set()
    for flag in ("--tls-cert", "--tls-key", "--client-ca"):
        path = flag_value(args, flag)
        assert path, f"{flag} missing"
        secrets.add(volumes[mounted_dir(lowcarb, path)["name"]]["secret"]["secretName"])
    assert secrets == {"lowcarb-tls", "lowcarb-client-ca"}
    assert not [v for v in volumes.values() if "configMap" in v and "scheduler" in v["name"]]

    (port,) = [p for p in lowcarb["ports"] if str(p["containerPort"]) == flag_value(args, "--port")]
    service = find(objects, "Service", "lowcarb")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    snippet = load_yaml_documents(EXTENDER_ONLY / "kube-scheduler-extender.yaml")[0]
    (extender,) = snippet["extenders"]
    namespace = service["metadata"]["namespace"]
    dns = f"{service['metadata']['name']}.{namespace}.svc"
    assert extender["urlPrefix"] == f"https://{dns}:{service_port['port']}"
    assert extender["tlsConfig"]["serverName"] == dns
    configmaps = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]
    assert configmaps == ["lowcarb-policy"]


def test_dev_overlay_uses_local_image_and_no_volume_claim() -> None:
    objects = build(DEV)
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    deployment = find(objects, "Deployment", "lowcarb")
    lowcarb = container(deployment, "lowcarb")
    assert lowcarb["image"] == "lowcarb:dev"
    assert lowcarb["imagePullPolicy"] == "IfNotPresent"


def test_ha_overlay_spreads_two_replicas_over_nodes() -> None:
    objects = build(HA)
    deployment = find(objects, "Deployment", "lowcarb")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    # never both on one node: required anti-affinity on the host name, nothing pulling together
    assert "podAffinity" not in pod["affinity"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    # and over zones where there are several, without blocking a one-zone cluster
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    # a drain or upgrade takes one replica at a time
    budget = find(objects, "PodDisruptionBudget", "lowcarb")
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # no ReadWriteOnce ledger volume to pin both to one node: the ledger is PostgreSQL, its URL
    # and password from a Secret that is referenced, never rendered
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    lowcarb = container(deployment, "lowcarb")
    env = {e["name"]: e["valueFrom"] for e in lowcarb["env"]}
    assert flag_value(lowcarb["args"], "--ledger") == "$(LOWCARB_LEDGER_URL)"
    assert env["LOWCARB_LEDGER_URL"] == {"secretKeyRef": {"name": "lowcarb-ledger", "key": "url"}}
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "lowcarb-ledger", "key": "password"}}
    assert not [o for o in objects if o["kind"] == "Secret"]
    # leader election is what makes two replicas safe: kube-scheduler's and the gate controller's
    config = find(objects, "ConfigMap", "lowcarb-scheduler-config")
    assert "leaderElect: true" in config["data"]["kube-scheduler-config.yaml"]
    assert "--leader-elect" in lowcarb["args"]
