"""Extender v1 wire types: real kube-scheduler payloads decode, answers use Go's field names."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest

from scheduler import wire

FIXTURES = Path(__file__).parent / "fixtures" / "kube-scheduler"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def fixture(version: str, verb: str, cache: bool) -> bytes:
    name = f"{verb}.args.nodeCacheCapable-{'true' if cache else 'false'}.json"
    return (FIXTURES / version / name).read_bytes()


@pytest.mark.parametrize("version", VERSIONS)
def test_node_carrying_args_keep_each_node_verbatim(version: str) -> None:
    body = fixture(version, "filter", cache=False)
    args = wire.decode_args(body)
    assert args.Pod is not None and args.Pod.metadata.name == "train-h100"
    assert args.NodeNames is None
    assert args.Nodes is not None and args.Nodes.items is not None
    sent = json.loads(body)["Nodes"]["items"]
    assert len(args.Nodes.items) == len(sent) == 4
    for raw, obj in zip(args.Nodes.items, sent, strict=True):
        assert bytes(raw) in body  # the exact bytes, not a re-encoding
        assert json.loads(bytes(raw)) == obj
        node = wire.decode_node(raw)
        assert node.metadata.name == obj["metadata"]["name"]
        assert node.status.allocatable == obj["status"]["allocatable"]
    echoed = wire.encode(wire.ExtenderFilterResult(Nodes=args.Nodes))
    for raw in args.Nodes.items:
        assert bytes(raw) in echoed


@pytest.mark.parametrize("version", VERSIONS)
def test_name_args_and_pod_fields(version: str) -> None:
    args = wire.decode_args(fixture(version, "prioritize", cache=True))
    assert args.Nodes is None
    assert args.NodeNames == ["use1-a-gpu", "usw2-a-gpu", "usw2-b-gpu", "euc1-a-gpu"]
    pod = args.Pod
    assert pod is not None and pod.key == "e2e/train-h100"
    assert pod.spec.containers is not None
    res = pod.spec.containers[0].resources
    assert res is not None and res.requests is not None
    assert res.requests["nvidia.com/gpu"] == "4"


@pytest.mark.parametrize("version", VERSIONS)
def test_key_only_decode_agrees_with_the_full_decode(version: str) -> None:
    body = fixture(version, "prioritize", cache=False)
    keys = wire.decode_args_keys(body)
    full = wire.decode_args(body)
    assert keys.Nodes is not None and keys.Nodes.items is not None
    assert full.Nodes is not None and full.Nodes.items is not None
    assert [(k.metadata.name, k.metadata.resourceVersion) for k in keys.Nodes.items] == [
        (wire.decode_node(r).metadata.name, wire.decode_node(r).metadata.resourceVersion)
        for r in full.Nodes.items
    ]
    assert keys.Pod == full.Pod


@pytest.mark.parametrize("version", VERSIONS)
def test_binding_args(version: str) -> None:
    args = wire.decode_binding(fixture(version, "bind", cache=True))
    assert (args.PodName, args.PodNamespace, args.Node) == ("train-h100", "e2e", "usw2-a-gpu")
    assert args.PodUID


def test_keys_match_case_insensitively_like_go() -> None:
    canonical = wire.decode_args(b'{"Pod":{"metadata":{"name":"p"}},"NodeNames":["a","b"]}')
    for body in (
        b'{"pod":{"metadata":{"name":"p"}},"nodenames":["a","b"]}',
        b'{"POD":{"metadata":{"name":"p"}},"NODENAMES":["a","b"],"nodes":null}',
        b'{"Pod":{"metadata":{"name":"p"}},"nodeNames":["a","b"]}',  # only one key differs
        b'{"pOd":{"metadata":{"name":"p"}},"NodeNames":["a","b"]}',
    ):
        assert wire.decode_args(body) == canonical, body
    folded = wire.decode_args(b'{"pod":{},"nodes":{"items":[{"metadata":{"name":"n1"}}]}}')
    assert folded.Nodes is not None and folded.Nodes.items is not None
    assert wire.decode_node(folded.Nodes.items[0]).metadata.name == "n1"
    binding = wire.decode_binding(b'{"podname":"p","PODNAMESPACE":"ns","podUID":"u","node":"n"}')
    assert (binding.PodName, binding.PodNamespace, binding.PodUID, binding.Node) == (
        "p",
        "ns",
        "u",
        "n",
    )


def test_unknown_fields_are_ignored() -> None:
    body = (
        b'{"Pod":{"metadata":{"name":"p","future":1},"spec":{"newField":[1,2]},"x":{}},'
        b'"NodeNames":["a"],"Extra":{"deep":[{"a":null}]},"Nodes":null}'
    )
    args = wire.decode_args(body)
    assert args.Pod is not None and args.Pod.metadata.name == "p" and args.NodeNames == ["a"]


# lowcarb's own words, whole: the decoder's wording changes between releases (msgspec 0.23
# says "Invalid UTF-8 encoded string" where 0.18 raised UnicodeDecodeError), ours does not
NOT_JSON = "body is not valid JSON: "
NOT_ARGS = "body is not ExtenderArgs: "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"Pod": ', NOT_JSON + "it ends early, at byte 8 (truncated?)"),
        (b"", NOT_JSON + "the body is empty"),
        (b" \n", NOT_JSON + "the body is empty"),
        (b"\xff\xfe", NOT_JSON + "byte 0xff at offset 0 is not UTF-8"),
        (b"not json", NOT_JSON + "unexpected 'not json' at line 1, column 1"),
        (b'{"Pod": {}}\n{"Pod": {}}', NOT_JSON + "unexpected '{\"Pod\": {}}' at line 2, column 1"),
        (b'{"Pod": {}, }', NOT_JSON + "unexpected '}' at line 1, column 13"),
        (b'{"Pod": NaN}', NOT_JSON + "NaN is not a JSON number"),
        (b'{"Pod": {"spec": {"priority": 1e400}}}', NOT_JSON + "the number 1e400 is out of range"),
        (b"[1, 2]", NOT_ARGS + "expected a JSON object, got an array"),
        (b'"text"', NOT_ARGS + "expected a JSON object, got a string"),
        (b'{"NodeNames": 5}', NOT_ARGS + "NodeNames: expected an array or null, got an integer"),
        (b'{"NodeNames": ["a", 7]}', NOT_ARGS + "NodeNames[1]: expected a string, got an integer"),
        (
            b'{"Pod": {"metadata": []}}',
            NOT_ARGS + "Pod.metadata: expected a JSON object, got an array",
        ),
        (
            b'{"pod": {"metadata": 1}}',
            NOT_ARGS + "Pod.metadata: expected a JSON object, got an integer",
        ),
        (
            b'{"Nodes": {"items": 3}}',
            NOT_ARGS + "Nodes.items: expected an array or null, got an integer",
        ),
        (
            b'{"Pod": {"metadata": {"labels": {"tier": true}}}}',
            NOT_ARGS + "Pod.metadata.labels['tier']: expected a string, got a boolean",
        ),
        (
            b'{"Pod": {"spec": {"priority": 1.5}}}',
            NOT_ARGS + "Pod.spec.priority: expected an integer or null, got a number",
        ),
        (b"[" * 50_000, NOT_JSON + "nested too deeply"),
        (b'{"Pod":' * 5_000, NOT_JSON + "nested too deeply"),
        (b'{"Pod":{"metadata":{"name":"\xff"}}}', NOT_JSON + "byte 0xff at offset 28 is not UTF-8"),
    ],
)
def test_bad_args_name_the_problem(body: bytes, message: str) -> None:
    for decode in (wire.decode_args, wire.decode_args_keys):
        with pytest.raises(wire.WireError) as exc:
            decode(body)
        assert str(exc.value) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", NOT_JSON + "it ends early, at byte 1 (truncated?)"),
        (
            b'{"PodName": 1}',
            "body is not ExtenderBindingArgs: PodName: expected a string, got an integer",
        ),
        (
            b'{"podname": 1}',
            "body is not ExtenderBindingArgs: PodName: expected a string, got an integer",
        ),
        (b'{"PodName": "p", "Node": "n"}', "ExtenderBindingArgs is missing PodNamespace"),
        (b"{}", "ExtenderBindingArgs is missing PodName, PodNamespace, Node"),
    ],
)
def test_bad_binding_names_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(wire.WireError) as exc:
        wire.decode_binding(body)
    assert str(exc.value) == message


def test_bad_node_object_names_the_field() -> None:
    for decode in (wire.decode_node, wire.node_key):
        with pytest.raises(wire.WireError) as exc:
            decode(b'{"metadata": 5}')
        assert str(exc.value) == (
            "node object is not a v1.Node: metadata: expected a JSON object, got an integer"
        )
    with pytest.raises(wire.WireError) as exc:
        wire.decode_node(b'{"status": {"allocatable": ["a"]}}')
    assert str(exc.value) == (
        "node object is not a v1.Node: status.allocatable: expected a JSON object or null, "
        "got an array"
    )
    assert wire.node_name(b'{"metadata": {"name": "n1", "labels": 3}}') == "n1"
    assert wire.node_name(b"[]") == ""


def test_answers_use_go_field_names() -> None:
    result = wire.ExtenderFilterResult(NodeNames=["a"], FailedNodes={"b": "why"})
    assert json.loads(wire.encode(result)) == {
        "Nodes": None,
        "NodeNames": ["a"],
        "FailedNodes": {"b": "why"},
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }
    assert wire.encode(wire.ExtenderBindingResult(Error="x")) == b'{"Error":"x"}'
    assert wire.encode([wire.HostPriority(Host="a", Score=7)]) == b'[{"Host":"a","Score":7}]'


def test_priorities_encoder_matches_msgspec_byte_for_byte() -> None:
    rng = random.Random(3)
    hostile = 'ab-.1é"\\\n\x00\x7f😀/<>\u2028'
    for trial in range(500):
        alphabet = hostile if trial % 2 else "abcdefghij-.0123456789"
        names = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            for _ in range(rng.randint(0, 30))
        ]
        levels = np.array([rng.randint(0, 10) for _ in names], dtype=np.int64)
        expected = wire.encode(
            [
                wire.HostPriority(Host=n, Score=s)
                for n, s in zip(names, levels.tolist(), strict=True)
            ]
        )
        as_array = np.array([*names, ""], dtype=object)[: len(names)]
        assert wire.encode_priorities(names, levels) == expected
        assert wire.encode_priorities(as_array, levels) == expected
    decoded = msgspec.json.decode(
        wire.encode_priorities(["n1", "n2"], np.array([10, 0])), type=list[wire.HostPriority]
    )
    assert decoded == [wire.HostPriority("n1", 10), wire.HostPriority("n2", 0)]


def test_priorities_out_of_range_levels_are_still_valid_json() -> None:
    out = wire.encode_priorities(["a"], np.array([11]))
    assert json.loads(out) == [{"Host": "a", "Score": 11}]  # never produced, but never broken
