"""Wire types of the kube-scheduler extender v1 API and the slice of Pod/Node objects lowcarb reads.

Decoded with msgspec (fast, unknown fields ignored). Keys go out with Go's field names
(``Pod``, ``NodeNames``, ``FailedNodes`` ...). Go's JSON decoder matches keys case-insensitively,
so :func:`decode_args` and :func:`decode_binding` fall back to a case-folding pass when the exact
keys are absent. In node-carrying mode (``nodeCacheCapable: false``) each node is also kept as
raw JSON so that a filter answer returns the very bytes kube-scheduler sent.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Raw, Struct


class WireError(ValueError):
    """A request body that is not valid JSON or not the expected extender type (HTTP 400)."""


# --- Kubernetes object slices ---------------------------------------------------------------


class OwnerReference(Struct, omit_defaults=True):
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None


class ObjectMeta(Struct, omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = None


class ResourceRequirements(Struct, omit_defaults=True):
    requests: dict[str, str] | None = None
    limits: dict[str, str] | None = None


class Container(Struct, omit_defaults=True):
    name: str = ""
    resources: ResourceRequirements | None = None
    restartPolicy: str | None = None


class NodeSelectorRequirement(Struct, omit_defaults=True):
    key: str = ""
    operator: str = ""
    values: list[str] | None = None


class NodeSelectorTerm(Struct, omit_defaults=True):
    matchExpressions: list[NodeSelectorRequirement] | None = None
    matchFields: list[NodeSelectorRequirement] | None = None


class NodeSelector(Struct, omit_defaults=True):
    nodeSelectorTerms: list[NodeSelectorTerm] | None = None


class PreferredSchedulingTerm(Struct, omit_defaults=True):
    weight: int = 0
    preference: NodeSelectorTerm | None = None


class NodeAffinity(Struct, omit_defaults=True):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[PreferredSchedulingTerm] | None = None


class Affinity(Struct, omit_defaults=True):
    nodeAffinity: NodeAffinity | None = None


class SchedulingGate(Struct, omit_defaults=True):
    name: str = ""


class PodSpec(Struct, omit_defaults=True):
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None
    overhead: dict[str, str] | None = None
    nodeSelector: dict[str, str] | None = None
    affinity: Affinity | None = None
    schedulingGates: list[SchedulingGate] | None = None
    nodeName: str = ""
    schedulerName: str = ""
    priority: int | None = None


class PodCondition(Struct, omit_defaults=True):
    type: str = ""
    status: str = ""


class PodStatus(Struct, omit_defaults=True):
    phase: str = ""
    startTime: str | None = None
    conditions: list[PodCondition] | None = None


class Pod(Struct, omit_defaults=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


class Taint(Struct, omit_defaults=True):
    key: str = ""
    value: str = ""
    effect: str = ""


class NodeSpec(Struct, omit_defaults=True):
    unschedulable: bool = False
    taints: list[Taint] | None = None


class NodeCondition(Struct, omit_defaults=True):
    type: str = ""
    status: str = ""


class NodeStatus(Struct, omit_defaults=True):
    capacity: dict[str, str] | None = None
    allocatable: dict[str, str] | None = None
    conditions: list[NodeCondition] | None = None


class Node(Struct, omit_defaults=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


# --- Extender v1 types ----------------------------------------------------------------------


class RawNodeList(Struct):
    """``*v1.NodeList`` with each item kept as raw JSON (decoded lazily, echoed verbatim)."""

    items: list[Raw] | None = None
    metadata: dict[str, Any] | None = None


class ExtenderArgs(Struct):
    Pod: Pod | None = None
    Nodes: RawNodeList | None = None
    NodeNames: list[str] | None = None


class ExtenderFilterResult(Struct):
    Nodes: RawNodeList | None = None
    NodeNames: list[str] | None = None
    FailedNodes: dict[str, str] = msgspec.field(default_factory=dict)
    FailedAndUnresolvableNodes: dict[str, str] = msgspec.field(default_factory=dict)
    Error: str = ""


class HostPriority(Struct):
    Host: str
    Score: int


class ExtenderBindingArgs(Struct):
    PodName: str = ""
    PodNamespace: str = ""
    PodUID: str = ""
    Node: str = ""


class ExtenderBindingResult(Struct):
    Error: str = ""


# --- Codecs ---------------------------------------------------------------------------------

_args_decoder = msgspec.json.Decoder(ExtenderArgs)
_binding_decoder = msgspec.json.Decoder(ExtenderBindingArgs)
_node_decoder = msgspec.json.Decoder(Node)
_pod_decoder = msgspec.json.Decoder(Pod)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

_ARGS_KEYS = {"pod": "Pod", "nodes": "Nodes", "nodenames": "NodeNames"}
_BINDING_KEYS = {
    "podname": "PodName",
    "podnamespace": "PodNamespace",
    "poduid": "PodUID",
    "node": "Node",
}


def _describe(exc: msgspec.DecodeError | msgspec.ValidationError) -> str:
    return str(exc).replace("Expected `object`, got", "expected a JSON object, got")


def _fold_keys(body: bytes, canonical: dict[str, str]) -> dict[str, Any] | None:
    """Re-key a JSON object's top level case-insensitively, as Go's decoder matches fields."""
    data = _any_decoder.decode(body)
    if not isinstance(data, dict):
        return None
    folded: dict[str, Any] = {}
    for key, value in data.items():
        name = canonical.get(key.lower())
        if name is not None:
            folded[name] = value
    return folded


def decode_args(body: bytes) -> ExtenderArgs:
    """Decode an ``ExtenderArgs`` body; raise :class:`WireError` naming the problem."""
    try:
        args = _args_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"body is not ExtenderArgs: {_describe(exc)}") from exc
    if args.Pod is None and args.Nodes is None and args.NodeNames is None:
        try:
            folded = _fold_keys(body, _ARGS_KEYS)
            if folded:
                args = msgspec.convert(folded, ExtenderArgs)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WireError(f"body is not ExtenderArgs: {_describe(exc)}") from exc
    return args


def decode_binding(body: bytes) -> ExtenderBindingArgs:
    """Decode an ``ExtenderBindingArgs`` body; raise :class:`WireError` naming the problem."""
    try:
        args = _binding_decoder.decode(body)
        if not (args.PodName or args.Node):
            folded = _fold_keys(body, _BINDING_KEYS)
            if folded:
                args = msgspec.convert(folded, ExtenderBindingArgs)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"body is not ExtenderBindingArgs: {_describe(exc)}") from exc
    missing = [f for f in ("PodName", "PodNamespace", "Node") if not getattr(args, f)]
    if missing:
        raise WireError(f"ExtenderBindingArgs is missing {', '.join(missing)}")
    return args


def decode_node(raw: bytes | Raw) -> Node:
    return _node_decoder.decode(raw)


def decode_pod(raw: bytes | Raw) -> Pod:
    return _pod_decoder.decode(raw)


def encode(value: object) -> bytes:
    return _encoder.encode(value)
