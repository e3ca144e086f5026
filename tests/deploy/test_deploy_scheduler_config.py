"""The KubeSchedulerConfiguration files: strict v1 field names, the extender's shape, the weight."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tests.support.deploy import BASE, DEPLOY, KUSTOMIZE, container, flag_value, load_yaml_documents

SCHEDULER_CONFIG = DEPLOY / "kube-scheduler-config.yaml"
EXTENDER_ONLY_SNIPPET = KUSTOMIZE / "overlays" / "extender-only" / "kube-scheduler-extender.yaml"

# Default in-tree score plugins and weights (kube-scheduler v1.30+): TaintToleration 3,
# NodeAffinity 2, InterPodAffinity 2, PodTopologySpread 2, NodeResourcesFit 1,
# NodeResourcesBalancedAllocation 1, ImageLocality 1; each plugin scores 0..100.
PLUGIN_MAX = 100 * (3 + 2 + 2 + 2 + 1 + 1 + 1)
RESOURCE_PLUGINS_MAX = 100 * (1 + 1 + 1)  # Fit, BalancedAllocation, ImageLocality
INTENT_PLUGINS_MAX = 100 * (3 + 2 + 2 + 2)  # taints, affinity, inter-pod affinity, spread
EXTENDER_MAX_SCORE = 10  # extender scores are 0..10, multiplied by weight and by 10

GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|ns))+$")
GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
GPU_RESOURCE = re.compile(r"^nvidia\.com/(gpu|gpu\.shared|mig-[1-7]g\.\d+gb)$")


def seconds(duration: str) -> float:
    """A Go time.Duration string ("2s", "1m30s", "500ms") in seconds."""
    assert GO_DURATION.match(duration), f"{duration!r} is not a Go duration such as 2s or 500ms"
    return sum(float(n) * UNIT_SECONDS[u] for n, u in GO_DURATION_PART.findall(duration))


class Strict(BaseModel):
    """Unknown keys are errors, as in kube-scheduler's strict config decoding."""

    model_config = ConfigDict(extra="forbid")


class ManagedResource(Strict):
    name: str
    ignoredByScheduler: bool = False


class TLSConfig(Strict):
    insecure: bool = False
    serverName: str = ""
    certFile: str = ""
    keyFile: str = ""
    caFile: str = ""
    certData: str = ""
    keyData: str = ""
    caData: str = ""


class Extender(Strict):
    urlPrefix: str
    filterVerb: str = ""
    preemptVerb: str = ""
    prioritizeVerb: str = ""
    weight: int = Field(default=0, ge=0)
    bindVerb: str = ""
    enableHTTPS: bool = False
    tlsConfig: TLSConfig | None = None
    httpTimeout: str | None = None
    nodeCacheCapable: bool = False
    managedResources: list[ManagedResource] = Field(default_factory=list)
    ignorable: bool = False


class Profile(Strict):
    schedulerName: str
    percentageOfNodesToScore: int | None = None
    plugins: dict[str, object] | None = None
    pluginConfig: list[dict[str, object]] | None = None


class ClientConnection(Strict):
    kubeconfig: str = ""
    acceptContentTypes: str = ""
    contentType: str = ""
    qps: float = 0
    burst: int = 0


class LeaderElection(Strict):
    leaderElect: bool
    leaseDuration: str = "15s"
    renewDeadline: str = "10s"
    retryPeriod: str = "2s"
    resourceLock: str = "leases"
    resourceName: str = "kube-scheduler"
    resourceNamespace: str = "kube-system"


class KubeSchedulerConfiguration(Strict):
    apiVersion: Literal["kubescheduler.config.k8s.io/v1"]
    kind: Literal["KubeSchedulerConfiguration"]
    parallelism: int | None = None
    leaderElection: LeaderElection | None = None
    clientConnection: ClientConnection | None = None
    percentageOfNodesToScore: int | None = Field(default=None, ge=0, le=100)
    podInitialBackoffSeconds: int | None = None
    podMaxBackoffSeconds: int | None = None
    profiles: list[Profile] = Field(default_factory=list)
    extenders: list[Extender] = Field(default_factory=list)
    delayCacheUntilActive: bool | None = None


def load_config(path: Path) -> KubeSchedulerConfiguration:
    (document,) = load_yaml_documents(path)
    return KubeSchedulerConfiguration.model_validate(document)


@pytest.fixture(scope="module")
def config() -> KubeSchedulerConfiguration:
    return load_config(SCHEDULER_CONFIG)


@pytest.fixture(scope="module")
def extender(config: KubeSchedulerConfiguration) -> Extender:
    assert len(config.extenders) == 1, "exactly one extender (lowcarb) is expected"
    return config.extenders[0]


@pytest.fixture(scope="module")
def snippet() -> KubeSchedulerConfiguration:
    return load_config(EXTENDER_ONLY_SNIPPET)


def test_strict_model_rejects_misspelt_field() -> None:
    document = load_yaml_documents(SCHEDULER_CONFIG)[0]
    document["extenders"][0]["enableHttps"] = False  # the pre-v1 spelling
    with pytest.raises(ValidationError, match="enableHttps"):
        KubeSchedulerConfiguration.model_validate(document)


def test_second_scheduler_profile_and_leader_election(config: KubeSchedulerConfiguration) -> None:
    assert [p.schedulerName for p in config.profiles] == ["lowcarb"]
    assert config.percentageOfNodesToScore == 100
    assert config.leaderElection is not None
    assert config.leaderElection.leaderElect is True
    assert config.leaderElection.resourceName == "lowcarb"
    election = config.leaderElection
    assert seconds(election.retryPeriod) < seconds(election.renewDeadline)
    assert seconds(election.renewDeadline) < seconds(election.leaseDuration)


def test_extender_calls_sidecar_with_every_verb(extender: Extender) -> None:
    assert extender.urlPrefix == "http://127.0.0.1:8888"
    assert (extender.filterVerb, extender.prioritizeVerb, extender.bindVerb) == (
        "filter",
        "prioritize",
        "bind",
    )
    assert extender.preemptVerb == ""
    assert extender.enableHTTPS is False
    assert extender.nodeCacheCapable is True
    assert extender.ignorable is True


def test_http_timeout_is_explicit_and_below_default(extender: Extender) -> None:
    assert extender.httpTimeout is not None, "set httpTimeout explicitly (default is 5s)"
    assert 0.5 <= seconds(extender.httpTimeout) < 5.0


@pytest.mark.parametrize("path", [SCHEDULER_CONFIG, EXTENDER_ONLY_SNIPPET], ids=lambda p: p.name)
def test_managed_resources_cover_gpus_and_mig(path: Path) -> None:
    (extender,) = load_config(path).extenders
    names = [r.name for r in extender.managedResources]
    assert len(names) == len(set(names)), f"duplicate managed resources in {names}"
    assert "nvidia.com/gpu" in names
    assert {"nvidia.com/mig-1g.5gb", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-7g.80gb"} <= set(
        names
    )
    bad = [n for n in names if not GPU_RESOURCE.match(n)]
    assert not bad, f"not an NVIDIA device-plugin resource name: {bad}"
    # kube-scheduler must keep counting GPUs itself.
    assert not any(r.ignoredByScheduler for r in extender.managedResources)


def test_weight_lets_lowcarb_decide_without_overriding_user_intent(extender: Extender) -> None:
    step = extender.weight * 10
    most = EXTENDER_MAX_SCORE * step
    # Our full range outweighs everything the resource plugins can say between nodes ...
    assert most > RESOURCE_PLUGINS_MAX
    # ... but never the user's own placement rules (taints, affinity, spread) all together,
    assert most < INTENT_PLUGINS_MAX < PLUGIN_MAX
    # and one lowcarb step is worth less than a fully preferred node affinity (weight 2).
    assert step < 200


def test_extender_only_snippet_uses_https_with_client_certificate(
    snippet: KubeSchedulerConfiguration, extender: Extender
) -> None:
    (remote,) = snippet.extenders
    assert remote.urlPrefix.startswith("https://")
    assert remote.enableHTTPS is True
    assert remote.tlsConfig is not None
    assert remote.tlsConfig.insecure is False
    assert remote.tlsConfig.certFile and remote.tlsConfig.keyFile and remote.tlsConfig.caFile
    assert remote.tlsConfig.serverName == "lowcarb.lowcarb-system.svc"
    assert remote.weight == extender.weight
    assert snippet.percentageOfNodesToScore == 100
    assert remote.httpTimeout is not None and seconds(remote.httpTimeout) < 5.0
    assert (remote.filterVerb, remote.prioritizeVerb, remote.bindVerb) == (
        "filter",
        "prioritize",
        "bind",
    )
    assert remote.nodeCacheCapable and remote.ignorable
    assert [r.name for r in remote.managedResources] == [r.name for r in extender.managedResources]


def test_sidecar_listens_where_the_extender_calls(extender: Extender) -> None:
    (deployment,) = load_yaml_documents(BASE / "deployment.yaml")
    args = container(deployment, "lowcarb")["args"]
    host, port = flag_value(args, "--host"), flag_value(args, "--port")
    assert host == "127.0.0.1", "the sidecar must listen on loopback only"
    assert extender.urlPrefix == f"http://{host}:{port}"


def test_kube_scheduler_reads_the_generated_config(config: KubeSchedulerConfiguration) -> None:
    (deployment,) = load_yaml_documents(BASE / "deployment.yaml")
    scheduler = container(deployment, "kube-scheduler")
    config_path = Path(str(flag_value(scheduler["command"], "--config")))
    mounts = {m["name"]: m["mountPath"] for m in scheduler["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert str(config_path.parent) == mounts["scheduler-config"]
    configmap = volumes["scheduler-config"]["configMap"]["name"]
    (kustomization,) = load_yaml_documents(BASE / "kustomization.yaml")
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    keys = [f.split("=", 1)[0] for f in generated[configmap]["files"]]
    assert keys == [config_path.name]
    # The leader-election lease lives in the pod's namespace and our Role covers it.
    assert config.leaderElection is not None
    namespace = deployment["metadata"]["namespace"]
    assert config.leaderElection.resourceNamespace == namespace
    roles = [
        doc
        for doc in load_yaml_documents(BASE / "rbac-kube-scheduler.yaml")
        if doc["kind"] == "Role" and doc["metadata"]["namespace"] == namespace
    ]
    lease_names = {
        name
        for role in roles
        for rule in role["rules"]
        if "leases" in rule["resources"] and {"get", "update"} <= set(rule["verbs"])
        for name in rule.get("resourceNames", [])
    }
    assert config.leaderElection.resourceName in lease_names
