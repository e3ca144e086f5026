"""Latency of the extender's filter and prioritize verbs, beside a decode+encode floor.

Runs in-process through :class:`scheduler.extender.service.Extender` (the bytes-in/bytes-out path
the HTTP
layer calls), built exactly as ``lowcarb serve`` builds it (bundled policy, offline carbon data).
Node objects are realistic (~12 KB each, modelled on the nodes kube-scheduler sent in
``tests/fixtures/kube-scheduler`` and on real GPU clusters): GFD/NFD labels, annotations,
managedFields, taints, conditions, addresses, nodeInfo and a ``status.images`` list.

lowcarb serves with its shipped filter shortlist (``--shortlist 100``): filter prices every
candidate and passes the 100 cheapest. The ``names/short`` and ``nodes/short`` prioritize rows
send what kube-scheduler then sends, the filter's answer, which prioritize scores from the
filter's pricing; the plain prioritize rows send every node (a pod with soft preferences, or
``--shortlist 0``), scored afresh. The ``names/burst`` filter row is a burst of identical pods:
the node list in a new order every call and the previous pod placed on a node the filter passed,
what a scheduling burst looks like to lowcarb (the other rows send the same bytes to an unchanged
state).

Two node modes: ``names`` (``nodeCacheCapable: true``; the service's cache is pre-filled with the
nodes and with pods using some of their GPUs) and ``nodes`` (full node objects in each request;
the cache already holds them at the same resourceVersion, as after the first cycle). The pod is
the captured ``train-h100`` (4 GPUs), so part of the nodes cannot take it: filter names a
reason for each, and prioritize scores all of them (its worst case).

The floor of each row is measured in the same run on the same bytes: the least decode + encode
that can produce that answer with msgspec and the wire types, with no state and no scoring
(``names``: decode ``ExtenderArgs``, encode the answer for every name; ``nodes``: filter
decodes ``ExtenderArgs`` with items kept raw to echo them and reads each item's name, while
prioritize decodes in one pass reading only each item's name). Each row shows wall-clock p50/p99
and the p50 of this thread's CPU time, which stays meaningful when other processes share the
cores.

``--http`` also measures every verb through the real uvicorn server on 127.0.0.1: the service's
FastAPI app (:func:`scheduler.extender.http.create_app`) against the bare Starlette app lowcarb
served before (:func:`starlette_app`, kept here as the baseline) and a second copy of that
baseline (an A/A control: how far two identical servers drift apart in this run), all served at
once and called in rotation in the same run, with the p50 ratios per verb (the target: within
5 %) and each server's CPU time per call (``/proc/PID/schedstat``; steadier on a busy machine).
Then the three apps alone, called in-process as ASGI apps, with this thread's CPU per call: what
the framework itself adds to each verb, unmoved by other processes on the cores.

Prints a table, then one JSON line last:
``{"benchmark": "latency", "results": [{"verb", "mode", "nodes", "p50_ms", "p99_ms",
"floor_p50_ms"}, ...], "http": [{"verb", "mode", "nodes", "fastapi_p50_ms", "starlette_p50_ms",
"p50_ratio", ...}, ...], "asgi": [{"verb", "fastapi_cpu_p50_us", ...}]}`` (``http``, ``asgi``:
with ``--http`` only).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from scheduler import wire
from scheduler.app import ServeOptions, build_runtime
from scheduler.demand import PodDemand, parse_demand
from scheduler.extender.service import Extender

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/kube-scheduler/v1.35.4/prioritize.args.nodeCacheCapable-true.json"
)
SIZES = (100, 1000, 5000)
MODES = ("names", "nodes")
PREFIX = "/scheduler"
# the FastAPI app, the Starlette baseline, and the baseline again: an A/A control whose ratio to
# the baseline shows how far two identical servers drift apart on this machine in this run
APPS = ("starlette", "fastapi", "control")
JSON_HEADERS = {"Content-Type": "application/json"}
REGIONS = (
    ("us-east-1", "us-east-1a"),
    ("us-west-2", "us-west-2b"),
    ("eu-central-1", "eu-central-1a"),
    ("eu-north-1", "eu-north-1a"),
    ("ap-northeast-1", "ap-northeast-1c"),
)
# product, GPUs, memory MiB, family, CPU, memory
SHAPES = (
    ("NVIDIA-H100-80GB-HBM3", 8, 81559, "hopper", "192", "2Ti"),
    ("NVIDIA-A100-SXM4-80GB", 8, 81920, "ampere", "96", "1Ti"),
    ("NVIDIA-A100-PCIE-40GB", 4, 40960, "ampere", "64", "512Gi"),
    ("NVIDIA-L4", 4, 23034, "ada-lovelace", "48", "192Gi"),
    ("Tesla-T4", 1, 15360, "turing", "16", "64Gi"),
)
IMAGES = (
    "nvcr.io/nvidia/pytorch",
    "nvcr.io/nvidia/tritonserver",
    "nvcr.io/nvidia/k8s-device-plugin",
    "nvcr.io/nvidia/gpu-feature-discovery",
    "nvcr.io/nvidia/k8s/dcgm-exporter",
    "nvcr.io/nvidia/cloud-native/gpu-operator-validator",
    "registry.k8s.io/kube-proxy",
    "registry.k8s.io/pause",
    "registry.k8s.io/nfd/node-feature-discovery",
    "docker.io/calico/node",
    "docker.io/calico/cni",
    "quay.io/prometheus/node-exporter",
    "ghcr.io/fluxcd/source-controller",
    "docker.io/library/python",
    "docker.io/rayproject/ray-ml",
    "quay.io/cilium/cilium",
    "public.ecr.aws/eks-distro/kubernetes/pause",
    "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni",
    "docker.io/vllm/vllm-openai",
    "ghcr.io/huggingface/text-generation-inference",
)


def _digest(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def make_node(i: int, rng: random.Random) -> dict[str, Any]:
    """One realistic GPU node object (what the API server returns, ~13 KB as JSON)."""
    region, zone = REGIONS[i % len(REGIONS)]
    ip = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
    product, gpus, gmem, family, cpu, mem = SHAPES[(i // len(REGIONS)) % len(SHAPES)]
    name = f"gpu-{region}-{i:05d}"
    ts = "2026-11-20T08:14:03Z"
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "p5.48xlarge",
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": region,
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "p5.48xlarge",
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": zone,
        "karpenter.sh/capacity-type": "on-demand",
        "karpenter.sh/nodepool": "gpu-training",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
        "feature.node.kubernetes.io/kernel-version.full": "6.1.112-124.190.amzn2023.x86_64",
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "feature.node.kubernetes.io/system-os_release.ID": "amzn",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "127",
        "nvidia.com/cuda.driver.rev": "05",
        "nvidia.com/cuda.runtime.major": "12",
        "nvidia.com/cuda.runtime.minor": "4",
        "nvidia.com/gfd.timestamp": "1732090443",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.deploy.container-toolkit": "true",
        "nvidia.com/gpu.deploy.dcgm-exporter": "true",
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
        "nvidia.com/gpu.family": family,
        "nvidia.com/gpu.machine": "p5.48xlarge",
        "nvidia.com/gpu.memory": str(gmem),
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.capable": "false",
        "nvidia.com/mig.strategy": "single",
    }
    fields_labels: dict[str, Any] = {f"f:{k}": {} for k in labels}
    managed = [
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": ts,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, **fields_labels}}},
        },
        {
            "manager": "gpu-feature-discovery",
            "operation": "Update",
            "apiVersion": "v1",
            "time": ts,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:nvidia.com/gpu.product": {}}}},
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": ts,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:status": {
                    "f:allocatable": {"f:nvidia.com/gpu": {}, "f:cpu": {}, "f:memory": {}},
                    "f:capacity": {"f:nvidia.com/gpu": {}},
                    "f:conditions": {
                        f'k:{{"type":"{t}"}}': {"f:lastHeartbeatTime": {}}
                        for t in ("DiskPressure", "MemoryPressure", "PIDPressure", "Ready")
                    },
                    "f:images": {},
                    "f:nodeInfo": {"f:bootID": {}},
                }
            },
            "subresource": "status",
        },
    ]
    images = []
    for image in rng.choices(IMAGES, k=30):
        tag = f"v{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        images.append(
            {
                "names": [f"{image}@{_digest(rng)}", f"{image}:{tag}"],
                "sizeBytes": rng.randint(700_000, 9_000_000_000),
            }
        )
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
            "reason": f"KubeletHasSufficient{t.removesuffix('Pressure')}",
            "message": f"kubelet has sufficient {t.removesuffix('Pressure').lower()} available",
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }
    )
    resources = {
        "cpu": cpu,
        "ephemeral-storage": "3758010052Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": mem,
        "nvidia.com/gpu": str(gpus),
        "pods": "737",
        "vpc.amazonaws.com/efa": "32",
    }
    return {
        "metadata": {
            "name": name,
            "uid": f"8cc04d02-013f-4f39-{i:04x}-7a598381689e"[:36],
            "resourceVersion": str(1_000_000 + i),
            "creationTimestamp": ts,
            "labels": labels,
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": ip,
                "csi.volume.kubernetes.io/nodeid": json.dumps(
                    {"ebs.csi.aws.com": f"i-0{rng.getrandbits(60):015x}"}
                ),
                "karpenter.k8s.aws/ec2nodeclass-hash": str(rng.getrandbits(63)),
                "nfd.node.kubernetes.io/feature-labels": "cpu-cpuid.AVX512F,kernel-version.full,"
                "pci-10de.present,system-os_release.ID",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "managedFields": managed,
        },
        "spec": {
            "providerID": f"aws:///{zone}/i-0{rng.getrandbits(60):015x}",
            "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": f"ip-10-0-{i % 256}.ec2.internal"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{rng.getrandbits(128):032x}",
                "systemUUID": f"ec2{rng.getrandbits(100):025x}",
                "bootID": f"{rng.getrandbits(128):032x}",
                "kernelVersion": "6.1.112-124.190.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.6.20241111",
                "containerRuntimeVersion": "containerd://1.7.23",
                "kubeletVersion": "v1.31.2-eks-94953ac",
                "kubeProxyVersion": "v1.31.2-eks-94953ac",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    }


def make_usage(node: dict[str, Any], k: int, rng: random.Random) -> dict[str, Any] | None:
    """A bound pod using some GPUs of ``node`` (None for an idle node)."""
    gpus = int(node["metadata"]["labels"]["nvidia.com/gpu.count"])
    used = rng.randint(0, gpus)
    if used == 0:
        return None
    return {
        "metadata": {"name": f"job-{k}", "namespace": "ml", "uid": f"uid-job-{k}"},
        "spec": {
            "nodeName": node["metadata"]["name"],
            "containers": [
                {
                    "name": "main",
                    "resources": {
                        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": str(used)}
                    },
                }
            ],
        },
        "status": {"phase": "Running"},
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], object], reps: int, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock milliseconds per call over ``reps`` calls, after two warm-up calls (GC on, as
    in serving); the same calls' CPU time of this thread goes to ``cpu`` when given (unlike wall
    time, it does not grow when other processes share the cores)."""
    fn()
    fn()
    out = []
    for _ in range(reps):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
        if cpu is not None:
            cpu.append((time.thread_time_ns() - c0) / 1e6)
    return out


class _Meta(msgspec.Struct):
    name: str = ""


class _Named(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _NamedList(msgspec.Struct):
    items: list[_Named] | None = None


class _ArgsNamed(msgspec.Struct):
    Pod: wire.Pod | None = None
    Nodes: _NamedList | None = None
    NodeNames: list[str] | None = None


_named = msgspec.json.Decoder(_Named)
_args_named = msgspec.json.Decoder(_ArgsNamed)


def floor_fn(verb: str, mode: str, body: bytes) -> Callable[[], bytes]:
    """The least decode + encode that can produce this answer, with msgspec and the wire types.

    ``names``: decode ``ExtenderArgs``, encode the answer for every name. ``nodes``: filter
    decodes ``ExtenderArgs`` with the items kept raw (to echo them) and reads each item's name;
    prioritize decodes in one pass reading only each item's name. No state, no scoring.
    """

    def run() -> bytes:
        items: list[wire.Raw] = []
        if mode == "names":
            names = wire.decode_args(body).NodeNames or []
        elif verb == "prioritize":
            listed = _args_named.decode(body).Nodes
            names = [n.metadata.name for n in (listed.items or [])] if listed else []
        else:
            raw_list = wire.decode_args(body).Nodes
            items = raw_list.items or [] if raw_list else []
            names = [_named.decode(raw).metadata.name for raw in items]
        if verb == "prioritize":
            return wire.encode([wire.HostPriority(Host=n, Score=0) for n in names])
        result = wire.ExtenderFilterResult()
        if mode == "nodes":
            result.Nodes = wire.RawNodeList(items=items, metadata={})
        else:
            result.NodeNames = list(names)
        return wire.encode(result)

    return run


def build_extender(nodes: list[dict[str, Any]], rng: random.Random) -> Extender:
    runtime = build_runtime(ServeOptions())
    state = runtime.extender.state
    for node in nodes:
        state.upsert_node(msgspec.convert(node, wire.Node))
    for k, node in enumerate(nodes):
        pod = make_usage(node, k, rng)
        if pod is not None:
            state.upsert_pod(msgspec.convert(pod, wire.Pod))
    return runtime.extender


def bodies(pod: Any, nodes: list[dict[str, Any]]) -> dict[str, bytes]:
    enc = msgspec.json.Encoder()
    names = [n["metadata"]["name"] for n in nodes]
    return {
        "names": enc.encode({"Pod": pod, "Nodes": None, "NodeNames": names}),
        "nodes": enc.encode(
            {"Pod": pod, "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": None}
        ),
    }


def shortlist_body(ext: Extender, body: bytes, mode: str) -> bytes | None:
    """The prioritize request kube-scheduler sends after this filter answered with a shortlist
    (``lowcarb serve --shortlist``, shipped 100): the same pod over the nodes filter passed;
    None when every feasible node fit the limit (no shortlist was made). Prioritize answers it
    from the filter's pricing."""
    if ext.shortlist <= 0:
        return None
    args = msgspec.json.decode(body)
    answer = msgspec.json.decode(ext.filter(body))
    if mode == "names":
        passed = answer.get("NodeNames") or []
    else:
        passed = (answer.get("Nodes") or {}).get("items") or []
    if len(passed) < ext.shortlist:  # every feasible node fits the limit: no shortlist made
        return None
    if mode == "names":
        args["NodeNames"] = passed
    else:
        args["Nodes"]["items"] = passed
    return msgspec.json.encode(args)


def burst_filter(
    ext: Extender, pod: dict[str, Any], nodes: list[dict[str, Any]], reps: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of the filters of a burst of identical pods: each call gets the
    node list in a new order (kube-scheduler's parallel filter reorders it every cycle) and sees
    the previous pod placed on a node its filter passed, so the node list is never the last
    one and one node changed since. Leaves those pods assumed in ``ext``'s state."""
    rng = random.Random(7)
    names = [n["metadata"]["name"] for n in nodes]
    enc = msgspec.json.Encoder()
    sent: list[tuple[bytes, PodDemand]] = []
    for i in range(reps + 2):
        rng.shuffle(names)
        one = json.loads(json.dumps(pod))
        one["metadata"].update(name=f"burst-{i}", uid=f"burst-{i}")
        body = enc.encode({"Pod": one, "Nodes": None, "NodeNames": names})
        sent.append((body, parse_demand(msgspec.convert(one, wire.Pod))))
    wall: list[float] = []
    cpu: list[float] = []
    for i, (body, demand) in enumerate(sent):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        answer = ext.filter(body)
        if i >= 2:  # two warm-up calls, as ``timed``
            wall.append((time.perf_counter_ns() - t0) / 1e6)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
        passed = msgspec.json.decode(answer).get("NodeNames") or []
        if passed:
            ext.state.assume(demand, passed[0])
    return wall, cpu


def row(
    verb: str,
    mode: str,
    nodes: int,
    took: tuple[list[float], list[float]],
    floor: tuple[list[float], list[float]],
    body_bytes: int,
    reps: int,
) -> dict[str, Any]:
    """One result row from the (wall, CPU) milliseconds of the calls and of their floor."""
    return {
        "verb": verb,
        "mode": mode,
        "nodes": nodes,
        "p50_ms": round(statistics.median(took[0]), 3),
        "p99_ms": round(percentile(took[0], 0.99), 3),
        "floor_p50_ms": round(statistics.median(floor[0]), 3),
        "cpu_p50_ms": round(statistics.median(took[1]), 3),
        "floor_cpu_p50_ms": round(statistics.median(floor[1]), 3),
        "body_mb": round(body_bytes / 2**20, 2),
        "reps": reps,
    }


def reps_for(n: int, mode: str, scale: float) -> int:
    base = {100: 300, 1000: 100, 5000: 40}[n] if mode == "names" else {100: 100, 1000: 25}.get(n, 9)
    return max(5, int(base * scale))


def run(
    sizes: tuple[int, ...],
    scale: float,
    http: list[dict[str, Any]] | None = None,
    asgi: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """In-process rows; with ``http`` (a list), the rows through uvicorn are added to it, and
    with ``asgi`` too, the apps' own CPU per call."""
    pod = json.loads(FIXTURE.read_bytes())["Pod"]
    rng = random.Random(42)
    all_nodes = [make_node(i, rng) for i in range(max(sizes))]
    node_kb = statistics.mean(len(msgspec.json.encode(n)) for n in all_nodes[:200]) / 1024
    print(f"node objects: {node_kb:.1f} KB each on average; pod: {pod['metadata']['name']}")
    rows: list[dict[str, Any]] = []
    for n in sizes:
        nodes = all_nodes[:n]
        ext = build_extender(nodes, random.Random(n))
        reqs = bodies(pod, nodes)
        for mode in MODES:
            body = reqs[mode]
            reps = reps_for(n, mode, scale)
            # what kube-scheduler sends prioritize after a shortlisted filter: the filter's answer
            short = shortlist_body(ext, body, mode)
            # (before the full prioritize, which replaces the filter's shortlisted decision)
            verbs = [("filter", mode, body)]
            if short is not None:
                verbs.append(("prioritize", f"{mode}/short", short))
            verbs.append(("prioritize", mode, body))
            for verb, row_mode, sent in verbs:
                call: Callable[[bytes], bytes] = getattr(ext, verb)
                floor_cpu: list[float] = []
                took_cpu: list[float] = []
                floor = timed(floor_fn(verb, mode, sent), reps, floor_cpu)
                took = timed(partial(call, sent), reps, took_cpu)
                rows.append(
                    row(verb, row_mode, n, (took, took_cpu), (floor, floor_cpu), len(sent), reps)
                )
                gc.collect()
        if http is not None:
            http.extend(http_rows(ext, reqs, n, scale))
            if asgi is not None:
                asgi.extend(asgi_rows(ext, reqs, n, scale))
        # last: it leaves the burst's pods placed in the state
        reps = reps_for(n, "names", scale)
        floor_cpu = []
        floor = timed(floor_fn("filter", "names", reqs["names"]), reps, floor_cpu)
        took, took_cpu = burst_filter(ext, pod, nodes, reps)
        sent = reqs["names"]
        rows.append(
            row("filter", "names/burst", n, (took, took_cpu), (floor, floor_cpu), len(sent), reps)
        )
        gc.collect()
    return rows


def starlette_app(ext: Extender, url_prefix: str) -> Any:
    """The extender's HTTP app as lowcarb served it before FastAPI (a bare Starlette app, verbs
    first, the same endpoint code): the baseline the FastAPI app is measured against. Kept here,
    for this benchmark only."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from scheduler import metrics
    from scheduler.extender.routes import DEFAULT_MAX_BODY, BodyTooLarge, read_body

    def verb(name: str, handler: Callable[[bytes], Any]) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                body = await read_body(request, DEFAULT_MAX_BODY)
                out = handler(body)
                if not isinstance(out, bytes):
                    out = await out
                return Response(out, media_type="application/json")
            except BodyTooLarge:
                metrics.ERRORS.labels("too_large").inc()
                return JSONResponse({"error": "too large"}, status_code=413)
            except wire.WireError as exc:
                metrics.ERRORS.labels("bad_request").inc()
                return JSONResponse({"error": str(exc)}, status_code=400)
            except Exception as exc:
                metrics.ERRORS.labels("internal").inc()
                return JSONResponse({"error": f"internal error in {name}: {exc}"}, status_code=500)
            finally:
                metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)

        return Route(f"{url_prefix}/{name}", endpoint, methods=["POST"], name=name)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    verbs = [verb(v, getattr(ext, v)) for v in ("filter", "prioritize", "bind", "preempt")]
    return Starlette(routes=[*verbs, Route("/healthz", healthz)])


def _serve(ext: Extender, port: int, kind: str) -> None:
    """Child process: serve ``ext`` (inherited by fork, cache and all) under uvicorn as
    ``lowcarb serve`` does: ``fastapi`` is the service's app (:func:`scheduler.extender.http.
    create_app`), ``starlette`` the baseline (:func:`starlette_app`)."""
    import uvicorn

    from scheduler.extender.http import create_app

    app = create_app(ext, url_prefix=PREFIX) if kind == "fastapi" else starlette_app(ext, PREFIX)
    gc.freeze()  # as lowcarb serve's lifespan does: the start-up state stays out of full passes
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def _start(ext: Extender, kind: str) -> tuple[Any, str]:
    import multiprocessing
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(ext, port, kind))
    server.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1.0).raise_for_status()
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline or not server.is_alive():
                server.terminate()
                raise RuntimeError(f"the {kind} benchmark server did not start") from None
            time.sleep(0.05)


def server_cpu_ns(pid: int | None) -> int | None:
    """CPU time the server process has run so far, in ns (Linux ``/proc/PID/schedstat``), or None.

    Unlike wall time it does not grow while the server waits for a core that other processes hold,
    so the per-request mean stays comparable on a busy machine."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _fixture(verb: str) -> bytes:
    return (FIXTURE.parent / f"{verb}.args.nodeCacheCapable-true.json").read_bytes()


def http_rows(ext: Extender, reqs: dict[str, bytes], n: int, scale: float) -> list[dict[str, Any]]:
    """Every verb through uvicorn on 127.0.0.1, against the FastAPI app, the Starlette baseline
    and a second copy of the baseline (the A/A control) in the same run: all served at once
    (forked processes, so the client does not share their interpreter), one keep-alive connection
    each (as kube-scheduler holds), and the calls interleaved (the order rotated each round), so
    all see the same load on shared cores."""
    import httpx

    # at least 25 calls per app even for 5,000 full nodes: a p50 of fewer moves with every hiccup
    calls = [
        (v, m, reqs[m], max(reps_for(n, m, scale), int(25 * scale)))
        for m in MODES
        for v in ("filter", "prioritize")
    ]
    small = max(20, int(1000 * scale))  # bind/preempt: the captured bodies, a few KB at most
    calls += [(v, "captured", _fixture(v), small) for v in ("bind", "preempt")]
    servers = [_start(ext, "fastapi" if kind == "fastapi" else "starlette") for kind in APPS]
    clients = {
        kind: httpx.Client(base_url=f"{base}{PREFIX}", timeout=120)
        for kind, (_, base) in zip(APPS, servers, strict=True)
    }
    pids = {kind: server.pid for kind, (server, _) in zip(APPS, servers, strict=True)}
    out = []
    try:
        for verb, mode, body, reps in calls:
            took: dict[str, list[float]] = {kind: [] for kind in APPS}
            cpu: dict[str, list[float]] = {kind: [] for kind in APPS}
            for kind in APPS:  # two warm-up calls each
                for _ in range(2):
                    clients[kind].post(f"/{verb}", content=body, headers=JSON_HEADERS)
            last = {kind: server_cpu_ns(pids[kind]) for kind in APPS}
            for i in range(reps):
                for kind in APPS[i % len(APPS) :] + APPS[: i % len(APPS)]:
                    t0 = time.perf_counter_ns()
                    clients[kind].post(f"/{verb}", content=body, headers=JSON_HEADERS)
                    took[kind].append((time.perf_counter_ns() - t0) / 1e6)
                    # the server's CPU from this call's end to its next one's: the whole call,
                    # the work after the answer was sent included (the others run meanwhile)
                    now, before = server_cpu_ns(pids[kind]), last[kind]
                    if now is not None and before is not None and i > 0:
                        cpu[kind].append((now - before) / 1e6)
                    last[kind] = now
            row: dict[str, Any] = {
                "verb": verb,
                "mode": mode,
                "nodes": n if mode != "captured" else None,
                "body_mb": round(len(body) / 2**20, 3),
                "reps": reps,
            }
            for kind in APPS:
                row[f"{kind}_p50_ms"] = round(statistics.median(took[kind]), 3)
                row[f"{kind}_p99_ms"] = round(percentile(took[kind], 0.99), 3)
                used = statistics.median(cpu[kind]) if cpu[kind] else None
                row[f"{kind}_server_cpu_p50_ms"] = None if used is None else round(used, 3)
            for name, kind in (("p50_ratio", "fastapi"), ("control_p50_ratio", "control")):
                row[name] = round(row[f"{kind}_p50_ms"] / row["starlette_p50_ms"], 3)
            out.append(row)
    finally:
        for client in clients.values():
            client.close()
        for server, _ in servers:
            server.terminate()
            server.join(timeout=10)
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a and b else "-"


def asgi_rows(ext: Extender, reqs: dict[str, bytes], n: int, scale: float) -> list[dict[str, Any]]:
    """The apps alone, called in this process as ASGI apps (no uvicorn, no socket): this thread's
    CPU per call, interleaved, for each verb. What the framework itself adds to a call, measured
    with a clock that other processes on the cores do not move."""
    import asyncio

    from scheduler.extender.http import create_app

    apps = {
        "starlette": starlette_app(ext, PREFIX),
        "fastapi": create_app(ext, url_prefix=PREFIX),
        "control": starlette_app(ext, PREFIX),
    }
    bodies = {"filter": reqs["names"], "prioritize": reqs["names"]}
    bodies |= {v: _fixture(v) for v in ("bind", "preempt")}

    async def sent(_: Any) -> None:
        return None

    async def measure() -> list[dict[str, Any]]:
        out = []
        for verb, body in bodies.items():
            scope = {
                "type": "http",
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": f"{PREFIX}/{verb}",
                "raw_path": f"{PREFIX}/{verb}".encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [(b"content-type", b"application/json")],
                "client": ("127.0.0.1", 40000),
                "server": ("127.0.0.1", 8888),
            }

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            reps = max(50, int((2000 if verb in ("bind", "preempt") else 20000 // n) * scale))
            cpu: dict[str, list[float]] = {kind: [] for kind in APPS}
            for i in range(reps + 20):
                for kind in APPS[i % len(APPS) :] + APPS[: i % len(APPS)]:
                    c0 = time.thread_time_ns()
                    await apps[kind](dict(scope), receive, sent)
                    if i >= 20:
                        cpu[kind].append((time.thread_time_ns() - c0) / 1e3)
            row: dict[str, Any] = {"verb": verb, "nodes": n, "reps": reps}
            for kind in APPS:
                row[f"{kind}_cpu_p50_us"] = round(statistics.median(cpu[kind]), 2)
            out.append(row)
        return out

    return asyncio.run(measure())


def print_asgi_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\nthe apps alone, in-process ASGI calls (this thread's CPU per call, p50, microseconds): "
        "the service's app against the Starlette baseline, with no other process in the clock"
    )
    head = f"{'verb':<11}{'nodes':>6}{'reps':>7}{'F':>10}{'S':>10}{'A/A':>10}{'F - S':>9}{'F/S':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        f, s, c = (r[f"{k}_cpu_p50_us"] for k in ("fastapi", "starlette", "control"))
        print(
            f"{r['verb']:<11}{r['nodes']:>6}{r['reps']:>7}{f:>10.2f}{s:>10.2f}{c:>10.2f}"
            f"{f - s:>9.2f}{f / s:>7.3f}"
        )


def print_http_table(rows: list[dict[str, Any]]) -> None:
    """FastAPI app vs Starlette baseline through uvicorn, per verb, with the A/A control."""
    print(
        "\nthrough uvicorn on 127.0.0.1 (ms): F = the FastAPI app, S = the Starlette baseline, "
        "A/A = a second copy of S against S (this run's noise); cpu = the server's CPU per call"
    )
    head = (
        f"{'verb':<11}{'mode':<10}{'nodes':>6}{'body MB':>9}{'reps':>6}"
        f"{'F p50':>9}{'S p50':>9}{'F/S':>7}{'A/A':>7}{'F p99':>9}{'S p99':>9}"
        f"{'F cpu':>8}{'S cpu':>8}{'F/S':>7}{'A/A':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        nodes = "-" if r["nodes"] is None else str(r["nodes"])
        cpu = {k: r[f"{k}_server_cpu_p50_ms"] for k in APPS}
        print(
            f"{r['verb']:<11}{r['mode']:<10}{nodes:>6}{r['body_mb']:>9.3f}{r['reps']:>6}"
            f"{r['fastapi_p50_ms']:>9.3f}{r['starlette_p50_ms']:>9.3f}"
            f"{r['p50_ratio']:>7.3f}{r['control_p50_ratio']:>7.3f}"
            f"{r['fastapi_p99_ms']:>9.3f}{r['starlette_p99_ms']:>9.3f}"
            f"{_fmt(cpu['fastapi'], 8)}{_fmt(cpu['starlette'], 8)}"
            f"{_ratio(cpu['fastapi'], cpu['starlette']):>7}"
            f"{_ratio(cpu['control'], cpu['starlette']):>7}"
        )
    above = [r for r in rows if r["p50_ratio"] > 1.05]
    noise = max(abs(r["control_p50_ratio"] - 1.0) for r in rows)
    print(
        f"target http p50 within 5 % of Starlette: {len(rows) - len(above)} of {len(rows)} rows: "
        f"{'met' if not above else 'MISSED'}; the A/A control drifted up to {noise:.1%} in this run"
    )
    for r in above:
        cpu_ratio = _ratio(r["fastapi_server_cpu_p50_ms"], r["starlette_server_cpu_p50_ms"])
        print(
            f"  above: {r['verb']}/{r['mode']}/{r['nodes'] or '-'} F/S {r['p50_ratio']:.3f} "
            f"(its A/A {r['control_p50_ratio']:.3f}; server CPU F/S {cpu_ratio})"
        )


def _fmt(value: float | None, width: int) -> str:
    return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'verb':<11}{'mode':<12}{'nodes':>6}{'body MB':>9}{'reps':>6}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'floor p50':>10}{'x floor':>8}"
        f"{'cpu p50':>9}{'floor cpu':>10}{'x floor':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        floor, cpu, floor_cpu = r["floor_p50_ms"], r.get("cpu_p50_ms"), r.get("floor_cpu_p50_ms")
        ratio = f"{r['p50_ms'] / floor:.2f}" if floor else "-"
        cpu_ratio = f"{cpu / floor_cpu:.2f}" if cpu and floor_cpu else "-"
        print(
            f"{r['verb']:<11}{r['mode']:<12}{r['nodes']:>6}{r['body_mb']:>9.2f}{r['reps']:>6}"
            f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{_fmt(floor, 10)}{ratio:>8}"
            f"{_fmt(cpu, 9)}{_fmt(floor_cpu, 10)}{cpu_ratio:>8}"
        )


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, judged on wall-clock and on CPU time, as lines saying met or missed."""
    out = []
    for r in rows:
        if r["verb"] != "prioritize" or r["nodes"] != 5000 or r["mode"] not in ("names", "nodes"):
            continue
        for kind, p50, floor in (
            ("wall", r["p50_ms"], r["floor_p50_ms"]),
            ("cpu", r["cpu_p50_ms"], r["floor_cpu_p50_ms"]),
        ):
            ratio = p50 / floor
            if r["mode"] == "names":
                ok = p50 <= 5.0 and ratio <= 3.0
                goal = f"p50 {p50:.2f} ms (<= 5), {ratio:.2f}x floor (<= 3)"
            else:
                ok = ratio <= 2.0
                goal = f"{ratio:.2f}x floor (<= 2)"
            verdict = "met" if ok else "MISSED"
            out.append(f"target prioritize/{r['mode']}/5000 [{kind}]: {goal}: {verdict}")
    return out


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="node counts")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply repetitions")
    parser.add_argument(
        "--http",
        action="store_true",
        help="also measure every verb through uvicorn: the FastAPI app vs the Starlette baseline",
    )
    opts = parser.parse_args(argv)
    sizes = tuple(int(s) for s in opts.sizes.split(","))
    load_before = load_average()
    http: list[dict[str, Any]] | None = [] if opts.http else None
    asgi: list[dict[str, Any]] | None = [] if opts.http else None
    rows = run(sizes, opts.scale, http, asgi)
    print_table(rows)
    if http:
        print_http_table(http)
    if asgi:
        print_asgi_table(asgi)
    print(f"load average before/after: {load_before} / {load_average()} ({os.cpu_count()} CPUs)")
    if 5000 in sizes:
        for line in check_targets(rows):
            print(line)
    keys = ("verb", "mode", "nodes", "p50_ms", "p99_ms", "floor_p50_ms")
    results = [{k: r[k] for k in keys} for r in rows]
    summary: dict[str, Any] = {"benchmark": "latency", "results": results}
    if http:
        summary["http"] = http
    if asgi:
        summary["asgi"] = asgi
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
