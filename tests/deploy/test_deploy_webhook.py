"""The class opt-in webhook's manifests: built with each layout, validated, wired to a TLS
Service, and served for real by `lowcarb serve` with a certificate from the self-signed script."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.support.deploy import (
    BASE,
    KUSTOMIZE,
    Manifest,
    build,
    container,
    find,
    flag_value,
    load_yaml_documents,
    pod_containers,
    running_lowcarb,
    selects,
    validate_object,
)
from tests.support.fakeapi import fixture

COMPONENT = KUSTOMIZE / "components" / "webhook"
CERT_MANAGER = KUSTOMIZE / "components" / "webhook-cert-manager"
OVERLAY = KUSTOMIZE / "overlays" / "webhook"
EXTENDER_ONLY = KUSTOMIZE / "overlays" / "extender-only"
SCRIPT = COMPONENT / "self-signed-cert.sh"
GATE = "lowcarb.dev/carbon-window"
IMAGE = {"name": "lowcarb", "newName": "lowcarb", "newTag": "0.1.0"}


def compose(directory: Path, resources: list[Path], components: list[Path]) -> Path:
    """A kustomization in DIRECTORY that combines a layout with components, as a user writes."""
    directory.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(p, directory) for p in resources],
        "components": [os.path.relpath(p, directory) for p in components],
        "images": [IMAGE],
    }
    (directory / "kustomization.yaml").write_text(json.dumps(kustomization))
    return directory


@pytest.fixture(params=["overlay-webhook", "extender-only+webhook"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> list[Manifest]:
    """Rendered objects of the committed webhook overlay and of extender-only plus the webhook."""
    if request.param == "overlay-webhook":
        return build(OVERLAY)
    return build(compose(tmp_path / "user", [EXTENDER_ONLY], [COMPONENT]))


@pytest.fixture
def with_cert_manager(tmp_path: Path) -> list[Manifest]:
    return build(compose(tmp_path / "user", [BASE], [COMPONENT, CERT_MANAGER]))


def webhook_of(objects: list[Manifest]) -> Manifest:
    configuration = find(objects, "MutatingWebhookConfiguration", "lowcarb-carbon-window")
    (hook,) = configuration["webhooks"]
    hook_: Manifest = hook
    return hook_


def pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def volume_of(deployment: Manifest, item: Manifest, path: str) -> Manifest:
    """The pod volume that holds PATH in container ITEM (longest matching mount, no subPath)."""
    mounts = [m for m in item["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is not on a volume of {item['name']}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    assert "subPath" not in mount, "a subPath mount never sees Secret or ConfigMap updates"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    volume: Manifest = volumes[mount["name"]]
    return volume


def test_component_files_validate() -> None:
    (kustomization,) = load_yaml_documents(COMPONENT / "kustomization.yaml")
    assert kustomization["kind"] == "Component"
    for name in kustomization["resources"]:
        documents = load_yaml_documents(COMPONENT / name)
        assert documents, name
        for obj in documents:
            validate_object(obj)


def test_every_rendered_object_validates(layout: list[Manifest]) -> None:
    for obj in layout:
        validate_object(obj)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in layout]
    assert len(names) == len(set(names)), "an object is rendered twice"
    assert not [o for o in layout if o["kind"] == "Secret"], "TLS material is never committed"


def test_webhook_configuration_never_blocks_a_pod(layout: list[Manifest]) -> None:
    hook = webhook_of(layout)
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 5
    assert len(hook["name"].split(".")) >= 3, "webhook names must be fully qualified"
    # Gates can only be set at creation: only pod CREATE is sent.
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert "caBundle" not in hook["clientConfig"], "the CA comes from cert-manager or the script"
    assert "url" not in hook["clientConfig"]


def test_only_opted_in_namespaces_are_selected(layout: list[Manifest]) -> None:
    hook = webhook_of(layout)
    own = find(layout, "Deployment", "lowcarb")["metadata"]["namespace"]
    selector = hook["namespaceSelector"]

    def namespace(name: str, **labels: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name, **labels}

    opted_in = {GATE: "enabled"}
    assert selects(selector, namespace("ml-batch", **opted_in))
    assert not selects(selector, namespace("ml-batch"))
    assert not selects(selector, namespace("ml-batch", **{GATE: "disabled"}))
    # Never kube-system or lowcarb's own namespace (its webhook pods must start without it).
    for name in ("kube-system", own, "lowcarb-system"):
        assert not selects(selector, namespace(name, **opted_in)), name
    # A pod in an opted-in namespace can opt out with a label.
    objects = hook["objectSelector"]
    assert selects(objects, {"app": "train"})
    assert not selects(objects, {"app": "train", GATE: "disabled"})


def test_service_exposes_the_webhook_over_tls(layout: list[Manifest]) -> None:
    hook = webhook_of(layout)
    ref = hook["clientConfig"]["service"]
    service = find(layout, "Service", ref["name"])
    assert service["metadata"]["namespace"] == ref["namespace"]
    deployment = find(layout, "Deployment", "lowcarb-webhook")
    assert deployment["metadata"]["namespace"] == ref["namespace"]
    labels = pod_labels(deployment)
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    # No other Service reaches the webhook pods, and this one reaches nothing else.
    for other in (o for o in layout if o["kind"] == "Service" and o is not service):
        assert not selects({"matchLabels": other["spec"]["selector"]}, labels), other
    scheduler = find(layout, "Deployment", "lowcarb")
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(scheduler))

    (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref.get("port", 443)]
    lowcarb = container(deployment, "lowcarb")
    (target,) = [p for p in lowcarb["ports"] if p["name"] == port["targetPort"]]
    args = lowcarb["args"]
    assert str(target["containerPort"]) == flag_value(args, "--port")
    assert flag_value(args, "--host") == "0.0.0.0"
    # HTTPS with a certificate from the lowcarb-webhook-tls secret, and no client certificate
    # required: the API server presents none.
    for flag in ("--tls-cert", "--tls-key"):
        volume = volume_of(deployment, lowcarb, str(flag_value(args, flag)))
        assert volume["secret"]["secretName"] == "lowcarb-webhook-tls", flag
    assert "--client-ca" not in args
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert lowcarb[probe]["httpGet"]["scheme"] == "HTTPS", probe
        assert lowcarb[probe]["httpGet"]["port"] == target["name"], probe


def test_webhook_pods_read_the_gate_controllers_policy_and_nothing_else(
    layout: list[Manifest],
) -> None:
    deployment = find(layout, "Deployment", "lowcarb-webhook")
    scheduler = find(layout, "Deployment", "lowcarb")
    lowcarb = container(deployment, "lowcarb")
    main = container(scheduler, "lowcarb")
    assert lowcarb["image"] == main["image"], "set the same lowcarb image for both Deployments"
    args = lowcarb["args"]
    policy = volume_of(deployment, lowcarb, str(flag_value(args, "--policy")))
    main_policy = volume_of(scheduler, main, str(flag_value(main["args"], "--policy")))
    assert policy["configMap"]["name"] == main_policy["configMap"]["name"] == "lowcarb-policy"
    assert (
        PurePosixPath(str(flag_value(args, "--policy"))).name
        == PurePosixPath(str(flag_value(main["args"], "--policy"))).name
    )
    # Request-fed: no API access, no ledger, no token.
    assert "--in-cluster" not in args and "--kubeconfig" not in args and "--ledger" not in args
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    account = pod["serviceAccountName"]
    assert account != scheduler["spec"]["template"]["spec"]["serviceAccountName"]
    find(layout, "ServiceAccount", account)
    for binding in (o for o in layout if o["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        assert account not in [s["name"] for s in binding.get("subjects", [])], binding


def test_webhook_pods_are_locked_down_and_survive_a_drain(layout: list[Manifest]) -> None:
    deployment = find(layout, "Deployment", "lowcarb-webhook")
    namespace = find(layout, "Namespace", deployment["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for item in pod_containers(deployment):
        context = item["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(item["resources"][kind]), kind
        assert ":" in item["image"] and not item["image"].endswith(":latest"), item["image"]
        assert "emptyDir" in volume_of(deployment, item, "/tmp/x")
    assert deployment["spec"]["replicas"] >= 2
    budget = find(layout, "PodDisruptionBudget", "lowcarb-webhook")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"], pod_labels(deployment))


def test_cert_manager_issues_the_mounted_certificate_and_injects_its_ca(
    with_cert_manager: list[Manifest],
) -> None:
    objects = with_cert_manager
    for obj in objects:
        if not obj["apiVersion"].startswith("cert-manager.io/"):
            validate_object(obj)
    configuration = find(objects, "MutatingWebhookConfiguration", "lowcarb-carbon-window")
    source = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = source.split("/")
    certificate = find(objects, "Certificate", name)
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["namespace"] == namespace
    deployment = find(objects, "Deployment", "lowcarb-webhook")
    lowcarb = container(deployment, "lowcarb")
    tls = volume_of(deployment, lowcarb, str(flag_value(lowcarb["args"], "--tls-cert")))
    assert certificate["spec"]["secretName"] == tls["secret"]["secretName"]
    ref = webhook_of(objects)["clientConfig"]["service"]
    dns = f"{ref['name']}.{ref['namespace']}.svc"
    assert dns in certificate["spec"]["dnsNames"]
    assert "server auth" in certificate["spec"]["usages"]
    # Signed by a CA issuer (the caBundle survives renewals), rooted in a self-signed issuer.
    issuer = find(objects, "Issuer", certificate["spec"]["issuerRef"]["name"])
    assert issuer["metadata"]["namespace"] == namespace
    ca_secret = issuer["spec"]["ca"]["secretName"]
    certificates = [o for o in objects if o["kind"] == "Certificate"]
    (ca,) = [o for o in certificates if o["spec"]["secretName"] == ca_secret]
    assert ca["spec"]["isCA"] is True
    root = find(objects, "Issuer", ca["spec"]["issuerRef"]["name"])
    assert root["spec"] == {"selfSigned": {}}
    # Renewal comes before expiry, with time to restart the webhook pods.
    hours = {k: int(certificate["spec"][k].removesuffix("h")) for k in ("duration", "renewBefore")}
    assert 24 * 7 <= hours["renewBefore"] < hours["duration"]
    assert not [o for o in objects if o["kind"] == "Secret"]


# --- the self-signed path, end to end against the real server --------------------------------

POLICY = """\
classes:
  batch:
    selector: {matchLabels: {app: demo}}
    temporalShift: {maxDelay: 12h, minSaving: 0.2}
"""


def run_script(directory: Path) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the self-signed path cannot be exercised")
    result = subprocess.run(
        ["sh", str(SCRIPT), str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def admission_review(pod: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0d5cf8b6-8a39-4f1e-9b1e-5c0c2f1f0a11",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "e2e",
                "operation": "CREATE",
                "object": pod,
            },
        }
    ).encode()


def https_request(
    port: int, server_name: str, ca_file: Path, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTPS request to 127.0.0.1:PORT, verifying the certificate for SERVER_NAME (as the
    API server does for <service>.<namespace>.svc) against CA_FILE only."""
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    wrapped = context.wrap_socket(raw, server_hostname=server_name)
    connection = http.client.HTTPConnection(server_name, port, timeout=10)
    connection.sock = wrapped
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_self_signed_certificate_serves_the_webhook(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    printed = run_script(pki)
    objects = build(OVERLAY)
    configuration = find(objects, "MutatingWebhookConfiguration", "lowcarb-carbon-window")
    hook = webhook_of(objects)
    ref = hook["clientConfig"]["service"]
    deployment = find(objects, "Deployment", "lowcarb-webhook")
    lowcarb = container(deployment, "lowcarb")
    secret = volume_of(deployment, lowcarb, str(flag_value(lowcarb["args"], "--tls-cert")))

    # The printed commands name the rendered secret and webhook, and carry the CA as caBundle.
    create = re.search(r"kubectl -n (\S+) create secret tls (\S+) ", printed)
    assert create, printed
    assert create.groups() == (ref["namespace"], secret["secret"]["secretName"])
    patch = re.search(r"kubectl patch mutatingwebhookconfiguration (\S+) .*-p='(.+)'", printed)
    assert patch, printed
    assert patch.group(1) == configuration["metadata"]["name"]
    (operation,) = json.loads(patch.group(2))
    assert operation["path"] == "/webhooks/0/clientConfig/caBundle"
    ca_bundle = tmp_path / "ca-bundle.crt"
    ca_bundle.write_bytes(base64.b64decode(operation["value"]))
    assert ca_bundle.read_bytes() == (pki / "ca.crt").read_bytes()

    # The Deployment's own arguments, with the mounted files put where this test keeps them.
    (tmp_path / "policy.yaml").write_text(POLICY)
    files = {
        str(flag_value(lowcarb["args"], "--policy")): tmp_path / "policy.yaml",
        str(flag_value(lowcarb["args"], "--tls-cert")): pki / "tls.crt",
        str(flag_value(lowcarb["args"], "--tls-key")): pki / "tls.key",
    }
    args: list[str] = []
    skip = False
    for arg in lowcarb["args"]:
        if skip:
            skip = False
        elif arg in {"--host", "--port"}:
            skip = True  # the test listens on loopback, on a free port
        else:
            args.append(str(files.get(arg, arg)))

    server_name = f"{ref['name']}.{ref['namespace']}.svc"
    pod = json.loads(fixture("watch-demo-pod-create.request.json"))  # app=demo, no gates
    with running_lowcarb(args, tmp_path / "serve.log") as port:
        # What the kubelet's HTTPS probes ask: no client certificate needed.
        for probe in ("readinessProbe", "livenessProbe"):
            status, _ = https_request(
                port, server_name, ca_bundle, "GET", lowcarb[probe]["httpGet"]["path"]
            )
            assert status == 200, probe
        # What the API server sends, verified like the API server verifies the service.
        status, body = https_request(
            port, server_name, ca_bundle, "POST", ref["path"], admission_review(pod)
        )
    assert status == 200, body
    response = json.loads(body)["response"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    added = json.loads(base64.b64decode(response["patch"]))
    assert added == [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}]


def test_self_signed_script_renews_under_the_same_ca(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    run_script(pki)
    ca, first = (pki / "ca.crt").read_bytes(), (pki / "tls.crt").read_bytes()
    printed = run_script(pki)
    assert (pki / "ca.crt").read_bytes() == ca, "a renewal must keep the caBundle valid"
    assert (pki / "tls.crt").read_bytes() != first
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "tls.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "kubectl patch mutatingwebhookconfiguration" in printed
    for name in ("ca.key", "tls.key"):
        assert (pki / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"


def test_self_signed_script_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("usage:")
    assert not list(tmp_path.iterdir())


def test_webhook_overlay_keeps_the_base_image() -> None:
    base = container(find(build(BASE), "Deployment", "lowcarb"), "lowcarb")["image"]
    objects = build(OVERLAY)
    for name in ("lowcarb", "lowcarb-webhook"):
        image = container(find(objects, "Deployment", name), "lowcarb")["image"]
        assert image == base, f"{name}: set the same lowcarb image in overlays/webhook as in base"
