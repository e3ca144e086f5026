"""Wire types of the kube-scheduler extender v1 API and the slice of Pod/Node objects lowcarb reads.

Decoded with msgspec (fast, unknown fields ignored). Keys go out with Go's field names
(``Pod``, ``NodeNames``, ``FailedNodes`` ...). Go's JSON decoder matches keys case-insensitively,
so :func:`decode_args` and :func:`decode_binding` fall back to a case-folding pass when the exact
keys are absent. In node-carrying mode (``nodeCacheCapable: false``) each node is also kept as
raw JSON so that a filter answer returns the very bytes kube-scheduler sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
import numpy as np
from msgspec import Raw, Struct

from scheduler.decode_errors import describe as describe_decode_error


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


class PodAffinity(Struct, omit_defaults=True):  # only whether soft terms exist is read
    preferredDuringSchedulingIgnoredDuringExecution: list[Raw] | None = None


class Affinity(Struct, omit_defaults=True):
    nodeAffinity: NodeAffinity | None = None
    podAffinity: PodAffinity | None = None
    podAntiAffinity: PodAffinity | None = None


class TopologySpreadConstraint(Struct, omit_defaults=True):
    whenUnsatisfiable: str = ""


class SchedulingGate(Struct, omit_defaults=True):
    name: str = ""


class PodSpec(Struct, omit_defaults=True):
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None
    overhead: dict[str, str] | None = None
    nodeSelector: dict[str, str] | None = None
    affinity: Affinity | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = None
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


class NodeKeyMeta(Struct):
    name: str = ""
    resourceVersion: str = ""


class NodeKey(Struct):
    """Just a node's name and resourceVersion: decoding skips the rest of the object."""

    metadata: NodeKeyMeta = msgspec.field(default_factory=NodeKeyMeta)


class NodeKeyList(Struct):
    items: list[NodeKey] | None = None


class ExtenderArgsKeys(Struct):
    """``ExtenderArgs`` with nodes reduced to their keys: prioritize's one-pass decode."""

    Pod: Pod | None = None
    Nodes: NodeKeyList | None = None
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


HOST_SCORE_MAX = 10  # extender scores are integers 0..10


class ExtenderBindingArgs(Struct):
    PodName: str = ""
    PodNamespace: str = ""
    PodUID: str = ""
    Node: str = ""


class ExtenderBindingResult(Struct):
    Error: str = ""


# --- Codecs ---------------------------------------------------------------------------------

_args_decoder = msgspec.json.Decoder(ExtenderArgs)
_args_keys_decoder = msgspec.json.Decoder(ExtenderArgsKeys)
_node_key_decoder = msgspec.json.Decoder(NodeKey)
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


# everything a decoder may raise on hostile input (bad UTF-8 in a string, nesting too deep)
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def _describe(kind: str, typ: type, body: bytes | Raw, exc: BaseException) -> str:
    """``body is not valid JSON: ...`` or ``body is not <kind>: <field>: expected ...``, in
    lowcarb's words (:mod:`scheduler.decode_errors`), never the decoder's."""
    return describe_decode_error("body", kind, typ, bytes(body), exc)


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


_A = TypeVar("_A", ExtenderArgs, ExtenderArgsKeys)


def _decode_args(body: bytes, decoder: msgspec.json.Decoder[_A], typ: type[_A]) -> _A:
    try:
        args = decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise WireError(_describe("ExtenderArgs", typ, body, exc)) from exc
    # kube-scheduler sends Go's spelling, so the fold pass runs only when a key is missing
    # (one of Nodes/NodeNames is always null, so only both missing or Pod missing count)
    if args.Pod is None or (args.Nodes is None and args.NodeNames is None):
        folded_body = body
        try:
            folded = _fold_keys(body, _ARGS_KEYS)
            if folded:  # re-encoded so that node items stay raw JSON (msgspec.Raw)
                folded_body = _encoder.encode(folded)
                args = decoder.decode(folded_body)
        except DECODE_ERRORS as exc:
            raise WireError(_describe("ExtenderArgs", typ, folded_body, exc)) from exc
    return args


def decode_args(body: bytes) -> ExtenderArgs:
    """Decode an ``ExtenderArgs`` body; raise :class:`WireError` naming the problem."""
    return _decode_args(body, _args_decoder, ExtenderArgs)


def decode_args_keys(body: bytes) -> ExtenderArgsKeys:
    """Decode an ``ExtenderArgs`` body keeping only each node's name and resourceVersion."""
    return _decode_args(body, _args_keys_decoder, ExtenderArgsKeys)


def decode_binding(body: bytes) -> ExtenderBindingArgs:
    """Decode an ``ExtenderBindingArgs`` body; raise :class:`WireError` naming the problem."""
    decoded = body
    try:
        args = _binding_decoder.decode(body)
        if not (args.PodName and args.PodNamespace and args.PodUID and args.Node):
            folded = _fold_keys(body, _BINDING_KEYS)
            if folded:
                decoded = _encoder.encode(folded)
                args = _binding_decoder.decode(decoded)
    except DECODE_ERRORS as exc:
        why = _describe("ExtenderBindingArgs", ExtenderBindingArgs, decoded, exc)
        raise WireError(why) from exc
    missing = [f for f in ("PodName", "PodNamespace", "Node") if not getattr(args, f)]
    if missing:
        raise WireError(f"ExtenderBindingArgs is missing {', '.join(missing)}")
    return args


def _describe_node(typ: type, raw: bytes | Raw, exc: BaseException) -> str:
    return describe_decode_error("node object", "a v1.Node", typ, bytes(raw), exc)


def decode_node(raw: bytes | Raw) -> Node:
    """Decode one node object; raise :class:`WireError` naming the problem."""
    try:
        return _node_decoder.decode(raw)
    except DECODE_ERRORS as exc:
        raise WireError(_describe_node(Node, raw, exc)) from exc


class _Named(Struct):
    metadata: dict[str, Any] | None = None


_named_decoder = msgspec.json.Decoder(_Named)


def node_key(raw: bytes | Raw) -> NodeKeyMeta:
    """A node object's name and resourceVersion (the rest is skipped, not decoded)."""
    try:
        return _node_key_decoder.decode(raw).metadata
    except DECODE_ERRORS as exc:
        raise WireError(_describe_node(NodeKey, raw, exc)) from exc


def node_name(raw: bytes | Raw) -> str:
    """Best-effort ``metadata.name`` of a node object that did not decode as a Node ('' if none)."""
    try:
        meta = _named_decoder.decode(raw).metadata or {}
    except DECODE_ERRORS:
        return ""
    name = meta.get("name")
    return name if isinstance(name, str) else ""


def decode_pod(raw: bytes | Raw) -> Pod:
    return _pod_decoder.decode(raw)


def encode(value: object) -> bytes:
    return _encoder.encode(value)


_JSON_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')  # copied as they are
_SCORE_SEP_LIST = [f'","Score":{level}}},{{"Host":"' for level in range(HOST_SCORE_MAX + 1)]


class _ScoreTemplate:
    """The answer for one candidate list with a one-digit score slot per node: rendering is a
    copy of the bytes, one vectorised write of the digits, and a ``1`` spliced before each 10."""

    __slots__ = ("buf", "digit")

    def __init__(self, plain: list[str]) -> None:
        pieces = [f'{{"Host":"{name}","Score":0}},' for name in plain]
        ends = np.cumsum([len(p) for p in pieces], dtype=np.intp) + 1  # after "[" and each ","
        self.digit = ends - 3  # the score digit of each entry (the last ends "0}]", same length)
        self.buf = np.frombuffer(("[" + "".join(pieces)[:-1] + "]").encode("ascii"), np.uint8)

    def render(self, lv: np.ndarray) -> bytes | None:
        tens = np.flatnonzero(lv >= 10)
        if tens.size > _MAX_SPLICES:
            return None
        buf = self.buf.copy()
        buf[self.digit] = 48 + lv % 10
        out = buf.tobytes()
        if tens.size == 0:
            return out
        parts: list[bytes] = []
        prev = 0
        for cut in self.digit[tens].tolist():
            parts += (out[prev:cut], b"1")
            prev = cut
        parts.append(out[prev:])
        return b"".join(parts)


_MAX_SPLICES = 256  # more nodes at level 10 than this: the join below is as fast
_TEMPLATES_KEPT = 8  # candidate lists (kube-scheduler sends the same one cycle after cycle)


def _escapes(joined: str) -> bool:
    """True when JSON would escape a character of ``joined`` (or it is not ASCII)."""
    return not joined.isascii() or bool(joined.encode("ascii").translate(None, _JSON_PLAIN))


# id(names) -> (names, its list, its template once seen twice)
_templates: dict[int, tuple[object, list[str], _ScoreTemplate | None]] = {}


def _template(names: object, plain: list[str]) -> _ScoreTemplate | None:
    """The cached template for this names array (built when the same array, with the same
    names, comes a second time; never for names JSON would escape)."""
    key = id(names)
    hit = _templates.get(key)
    if hit is not None and hit[0] is names and hit[1] == plain:
        if hit[2] is not None:
            return hit[2]
        if _escapes("".join(plain)):
            return None
        built = _ScoreTemplate(plain)
        _templates[key] = (names, list(plain), built)
        return built
    if len(_templates) >= _TEMPLATES_KEPT:
        _templates.pop(next(iter(_templates), key), None)
    _templates[key] = (names, list(plain), None)
    return None


def encode_priorities(names: Sequence[str] | np.ndarray, levels: np.ndarray) -> bytes:
    """``[{"Host": name, "Score": level}, ...]`` in ``names`` order, without building structs.

    The same bytes as encoding a list of :class:`HostPriority` (tested), built by interleaving
    names and per-level separators in one list and joining once (no struct per node); a names
    array seen before (the candidate list of every cycle) renders from a cached byte template;
    names JSON would escape, or non-ASCII ones (never valid node names), take msgspec's path."""
    n = len(names)
    if n == 0:
        return b"[]"
    lv = np.asarray(levels, dtype=np.int64)
    plain = names.tolist() if isinstance(names, np.ndarray) else list(names)
    if int(lv.min()) >= 0 and int(lv.max()) <= HOST_SCORE_MAX:
        template = _template(names, plain) if isinstance(names, np.ndarray) else None
        if template is not None and (rendered := template.render(lv)) is not None:
            return rendered
        if not _escapes("".join(plain)):
            parts: list[str] = ['[{"Host":"'] * (2 * n + 1)
            parts[1::2] = plain
            parts[2::2] = list(map(_SCORE_SEP_LIST.__getitem__, lv.tolist()))
            parts[-1] = f'","Score":{int(lv[-1])}}}]'
            return "".join(parts).encode("ascii")
    return _encoder.encode(
        [HostPriority(Host=h, Score=s) for h, s in zip(plain, lv.tolist(), strict=True)]
    )
