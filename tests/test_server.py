"""The real server (`lowcarb serve` on loopback) answers every captured kube-scheduler payload in
the shape kube-scheduler decodes, and turns bad input into clear 4xx answers without dying."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.support.fakeapi import free_port
from tests.support.serve import serve_processes, wait_ready

FIXTURES = Path(__file__).parent / "fixtures" / "kube-scheduler"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
INDEX = [
    (version, entry)
    for version in VERSIONS
    for entry in json.loads((FIXTURES / version / "INDEX.json").read_text())
]
PREFIX = "/scheduler"
MAX_BODY = 1_000_000
FILTER_KEYS = {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
NODE_NAMES = ["use1-a-gpu", "usw2-a-gpu", "usw2-b-gpu", "euc1-a-gpu"]
GPUS = {"use1-a-gpu": 8, "usw2-a-gpu": 8, "usw2-b-gpu": 4, "euc1-a-gpu": 4}


def fixture_bytes(version: str, verb: str, cache: bool) -> bytes:
    name = f"{verb}.args.nodeCacheCapable-{'true' if cache else 'false'}.json"
    return (FIXTURES / version / name).read_bytes()


def fixture_json(version: str, verb: str, cache: bool) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(version, verb, cache))
    return data


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Start `lowcarb serve --url-prefix /scheduler` on a free loopback port; yields its URL."""
    with serve_processes(tmp_path_factory.mktemp("serve-logs")) as procs:

        def start() -> str:
            port = free_port()
            flags = ["--port", str(port), "--url-prefix", PREFIX, "--max-body", str(MAX_BODY)]
            process, log = procs.start(*flags)
            base = f"http://127.0.0.1:{port}"
            wait_ready(
                process,
                log,
                lambda: httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200,
                f"/healthz on {port}",
            )
            return base

        yield start


@pytest.fixture(scope="module")
def server(start_server: Callable[[], str]) -> Iterator[httpx.Client]:
    """A server fed the fixture nodes once (as kube-scheduler's node-carrying calls do)."""
    with httpx.Client(base_url=start_server(), timeout=30.0) as client:
        for version in VERSIONS:
            resp = post(client, "filter", fixture_bytes(version, "filter", cache=False))
            assert resp.status_code == 200
        yield client


@pytest.fixture(scope="module")
def cold_server(start_server: Callable[[], str]) -> Iterator[httpx.Client]:
    """A server that has never seen a node (request-fed mode, names only so far)."""
    with httpx.Client(base_url=start_server(), timeout=30.0) as client:
        yield client


def post(client: httpx.Client, verb: str, body: bytes, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/json", "Accept-Encoding": "gzip", **headers}
    return client.post(f"{PREFIX}/{verb}", content=body, headers=sent)


class RawItems(msgspec.Struct):
    items: list[msgspec.Raw] | None = None


class RawFilterResult(msgspec.Struct):
    Nodes: RawItems | None = None


def check_filter(resp: httpx.Response, request: bytes, cache: bool) -> dict[str, Any]:
    """The answer kube-scheduler decodes for filter; every sent node is passed or failed."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    out: dict[str, Any] = resp.json()
    assert set(out) == FILTER_KEYS
    assert out["Error"] == ""
    assert isinstance(out["FailedNodes"], dict) and isinstance(
        out["FailedAndUnresolvableNodes"], dict
    )
    assert all(isinstance(v, str) and v for v in out["FailedNodes"].values())
    sent = json.loads(request)
    if cache:
        assert out["Nodes"] is None
        passed = out["NodeNames"]
        names = sent["NodeNames"]
    else:
        assert out["NodeNames"] is None
        passed = [n["metadata"]["name"] for n in out["Nodes"]["items"]]
        names = [n["metadata"]["name"] for n in sent["Nodes"]["items"]]
        # kube-scheduler gets back the very node objects it sent, byte for byte
        echoed = msgspec.json.decode(resp.content, type=RawFilterResult)
        assert echoed.Nodes is not None and echoed.Nodes.items is not None
        for raw in echoed.Nodes.items:
            assert bytes(raw) in request
    assert not set(passed) & set(out["FailedNodes"])
    assert sorted([*passed, *out["FailedNodes"]]) == sorted(names)
    assert passed == [n for n in names if n in set(passed)]  # the scheduler's order is kept
    return out


def check_prioritize(resp: httpx.Response, names: list[str]) -> dict[str, int]:
    """Scores by node; a node left out scored 0 (kube-scheduler adds nothing for it)."""
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert isinstance(out, list)  # a bare array of HostPriority
    for item in out:
        assert set(item) == {"Host", "Score"}
        assert type(item["Score"]) is int and 0 <= item["Score"] <= 10
    scores = {item["Host"]: item["Score"] for item in out}
    assert len(scores) == len(out) and set(scores) <= set(names)
    assert 0 not in scores.values()  # zeros are left out
    return {name: scores.get(name, 0) for name in names}


@pytest.mark.parametrize(
    ("version", "entry"),
    INDEX,
    ids=[f"{v}-{e['verb']}-{e['variant']}" for v, e in INDEX],
)
def test_replays_every_captured_payload(
    server: httpx.Client, version: str, entry: dict[str, Any]
) -> None:
    method, path = entry["http"].split(" ", 1)
    assert method == "POST" and path == f"{PREFIX}/{entry['verb']}"
    body = (FIXTURES / version / entry["file"]).read_bytes()
    assert len(body) == entry["bytes"]
    headers = {k: v for k, v in entry["request_headers"].items() if k in ("Content-Type",)}
    headers["Accept-Encoding"] = "gzip"
    resp = server.post(path, content=body, headers=headers)
    cache = entry["extender_config"]["nodeCacheCapable"]
    verb = entry["verb"]
    if verb == "filter":
        out = check_filter(resp, body, cache)
        assert out["FailedNodes"] == {}  # the pod asks for 4 GPUs: every node has 4 or 8 free
    elif verb == "prioritize":
        sent = json.loads(body)
        names = (
            sent["NodeNames"] if cache else [n["metadata"]["name"] for n in sent["Nodes"]["items"]]
        )
        scores = check_prioritize(resp, names)
        assert max(scores.values()) == 10  # the best node always gets the top level
    elif verb == "bind":
        assert resp.status_code == 200
        out = resp.json()
        assert set(out) == {"Error"}
        assert "--kubeconfig" in out["Error"]  # no cluster: binding must fail, and say why
    else:
        assert resp.status_code == 200, resp.text
        out = resp.json()
        sent = json.loads(body)
        expected = sent["NodeNameToMetaVictims"] or {
            node: {
                "Pods": [{"UID": p["metadata"]["uid"]} for p in v["Pods"]],
                "NumPDBViolations": v["NumPDBViolations"],
            }
            for node, v in sent["NodeNameToVictims"].items()
        }
        assert out == {"NodeNameToMetaVictims": expected}


@pytest.mark.parametrize("version", VERSIONS)
def test_names_mode_scores_equal_node_mode_scores(server: httpx.Client, version: str) -> None:
    by_nodes = check_prioritize(
        post(server, "prioritize", fixture_bytes(version, "prioritize", cache=False)), NODE_NAMES
    )
    by_names = check_prioritize(
        post(server, "prioritize", fixture_bytes(version, "prioritize", cache=True)), NODE_NAMES
    )
    assert by_names == by_nodes
    body = fixture_bytes(version, "filter", cache=True)
    out = check_filter(post(server, "filter", body), body, cache=True)
    assert out["NodeNames"] == NODE_NAMES


def six_gpu_pod(payload: dict[str, Any]) -> dict[str, Any]:
    container = payload["Pod"]["spec"]["containers"][0]
    container["resources"]["requests"]["nvidia.com/gpu"] = "6"
    container["resources"]["limits"]["nvidia.com/gpu"] = "6"
    payload["Pod"]["metadata"]["uid"] = "six-gpus"
    return payload


@pytest.mark.parametrize("cache", [False, True])
def test_nodes_that_cannot_fit_are_failed_with_a_reason(server: httpx.Client, cache: bool) -> None:
    body = json.dumps(six_gpu_pod(fixture_json(VERSIONS[0], "filter", cache))).encode()
    out = check_filter(post(server, "filter", body), body, cache)
    small = [n for n in NODE_NAMES if GPUS[n] < 6]
    assert sorted(out["FailedNodes"]) == sorted(small)
    for name in small:
        assert out["FailedNodes"][name] == "needs 6 free GPUs, has 4 of 4"
    passed = out["NodeNames"] if cache else [n["metadata"]["name"] for n in out["Nodes"]["items"]]
    assert passed == [n for n in NODE_NAMES if GPUS[n] >= 6]


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_names_fail_with_a_reason_and_score_zero(
    cold_server: httpx.Client, version: str
) -> None:
    body = fixture_bytes(version, "filter", cache=True)
    out = check_filter(post(cold_server, "filter", body), body, cache=True)
    assert out["NodeNames"] == []
    assert sorted(out["FailedNodes"]) == sorted(NODE_NAMES)
    assert all("not in lowcarb's cache" in r for r in out["FailedNodes"].values())
    body = fixture_bytes(version, "prioritize", cache=True)
    assert set(check_prioritize(post(cold_server, "prioritize", body), NODE_NAMES).values()) == {0}


def test_keys_match_case_insensitively_and_unknown_fields_are_ignored(
    server: httpx.Client,
) -> None:
    canonical = fixture_json(VERSIONS[0], "filter", cache=True)
    expected = post(server, "filter", json.dumps(canonical).encode()).json()
    variant = {
        "pod": {**canonical["Pod"], "futureField": {"x": [1, 2]}},
        "nodes": None,
        "NODENAMES": canonical["NodeNames"],
        "SomethingNew": {"deep": [None, True]},
    }
    assert post(server, "filter", json.dumps(variant).encode()).json() == expected


@pytest.mark.parametrize(
    ("verb", "body", "message"),
    [
        ("filter", b'{"Pod": {"metadata": ', "body is not valid JSON: it ends early, at byte 21"),
        ("prioritize", b"not json at all", "body is not valid JSON: unexpected 'not json at '"),
        ("filter", b"[1, 2, 3]", "body is not ExtenderArgs: expected a JSON object, got an array"),
        (
            "prioritize",
            b'{"NodeNames": {"a": 1}}',
            "body is not ExtenderArgs: NodeNames: expected an array or null, got a JSON object",
        ),
        (
            "filter",
            b'{"Pod": {"spec": {"containers": 7}}}',
            "body is not ExtenderArgs: Pod.spec.containers: expected an array or null, "
            "got an integer",
        ),
        ("filter", b"[" * 100_000, "body is not valid JSON: nested too deeply"),
        ("filter", b'{"Pod":' * 10_000, "body is not valid JSON: nested too deeply"),
        ("bind", b"{]", "body is not valid JSON: unexpected ']' at line 1, column 2"),
        ("bind", b'{"PodName": "p"}', "ExtenderBindingArgs is missing PodNamespace, Node"),
        ("preempt", b"[[[", "body is not ExtenderPreemptionArgs: it ends early, at byte 3"),
        ("preempt", b'{"a": 1', "body is not ExtenderPreemptionArgs: it ends early, at byte 7"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(
    server: httpx.Client, verb: str, body: bytes, message: str
) -> None:
    resp = post(server, verb, body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["message"].startswith(message)  # lowcarb's words, not the decoder's
    assert error["code"] == "bad_request" and error["field"] == "body"


def test_missing_pod_is_a_filter_error(server: httpx.Client) -> None:
    body = json.dumps({"Pod": None, "Nodes": None, "NodeNames": NODE_NAMES}).encode()
    out = post(server, "filter", body).json()
    assert set(out) == FILTER_KEYS
    assert "ExtenderArgs.Pod is missing" in out["Error"]


def test_unparsable_requests_are_a_filter_error_naming_the_field(server: httpx.Client) -> None:
    payload = fixture_json(VERSIONS[0], "filter", cache=True)
    payload["Pod"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "abc"
    body = json.dumps(payload).encode()
    out = post(server, "filter", body).json()
    assert "spec.containers[main].resources.requests['cpu']" in out["Error"]
    assert "'abc' is not a Kubernetes quantity" in out["Error"]
    # prioritize cannot answer an error: it scores every node 0 instead of failing the cycle
    scores = check_prioritize(post(server, "prioritize", body), NODE_NAMES)
    assert set(scores.values()) == {0}


def test_a_bad_node_object_fails_that_node_only(server: httpx.Client) -> None:
    payload = fixture_json(VERSIONS[0], "filter", cache=False)
    bad = payload["Nodes"]["items"][2]
    bad["status"]["allocatable"] = ["not", "a", "map"]
    bad["metadata"]["resourceVersion"] = "99999"  # a changed object has a new version
    body = json.dumps(payload).encode()
    out = post(server, "filter", body).json()
    assert out["FailedNodes"]["usw2-b-gpu"] == (
        "node object is not a v1.Node: status.allocatable: expected a JSON object or null, "
        "got an array"
    )
    passed = [n["metadata"]["name"] for n in out["Nodes"]["items"]]
    assert passed == [n for n in NODE_NAMES if n != "usw2-b-gpu"]


def test_bodies_above_the_limit_get_413(server: httpx.Client) -> None:
    big = b'{"Pod": null, "NodeNames": ["' + b"x" * MAX_BODY + b'"]}'
    assert post(server, "filter", big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    resp = server.post(f"{PREFIX}/prioritize", content=chunks())
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_large"
    assert "--max-body" in resp.json()["error"]["message"]


def test_garbage_never_takes_the_worker_down(server: httpx.Client) -> None:
    garbage = [
        bytes(range(256)) * 4,
        b"\x00" * 1000,
        b'{"Pod": {"metadata": {"name": "\xff\xfe"}}}',
        b'{"Nodes": {"items": [1, "x", null, {"metadata": 5}]}, "Pod": {}}',
        b'{"NodeNames": [' + b'"a",' * 1000 + b'"b"], "Pod": {"spec": {"overhead": {"cpu": 1}}}}',
        b'{"Pod": {"spec": {"priority": 1e999}}}',
        b'{"PodName": "p", "PodNamespace": "n", "Node": "x", "PodUID": 5}',
        b"\xef\xbb\xbf{}",
    ]
    for body in garbage:
        for verb in ("filter", "prioritize", "bind", "preempt"):
            resp = post(server, verb, body)
            assert resp.status_code < 500, (verb, body[:40], resp.text)
    body = fixture_bytes(VERSIONS[0], "filter", cache=True)
    check_filter(post(server, "filter", body), body, cache=True)
    assert server.get("/healthz").status_code == 200


def test_verbs_live_under_the_prefix_only(server: httpx.Client) -> None:
    body = fixture_bytes(VERSIONS[0], "filter", cache=True)
    assert server.post("/filter", content=body).status_code == 404
    assert server.get(f"{PREFIX}/filter").status_code == 405


def test_health_readiness_and_metrics(server: httpx.Client) -> None:
    health = server.get("/healthz")
    assert health.status_code == 200 and health.text == "ok"
    ready = server.get("/readyz")
    assert ready.status_code == 200  # request-fed mode: ready once the policy is loaded
    for verb in ("filter", "prioritize", "bind", "preempt"):
        post(server, verb, fixture_bytes(VERSIONS[0], verb, cache=True))
    post(server, "filter", b"{")
    text = server.get("/metrics").text
    for verb in ("filter", "prioritize", "bind", "preempt"):
        match = re.search(
            rf'^lowcarb_request_duration_seconds_count\{{verb="{verb}"\}} (\S+)$', text, re.M
        )
        assert match is not None, verb
        assert float(match.group(1)) >= 1
        assert f'lowcarb_request_duration_seconds_bucket{{le="0.005",verb="{verb}"}}' in text
    for verb in ("filter", "prioritize"):
        nodes = re.search(rf'^lowcarb_nodes_per_request_sum\{{verb="{verb}"\}} (\S+)$', text, re.M)
        assert nodes is not None and float(nodes.group(1)) >= len(NODE_NAMES)
    errors = re.search(r'^lowcarb_errors_total\{kind="bad_request"\} (\S+)$', text, re.M)
    assert errors is not None and float(errors.group(1)) >= 1
    assert re.search(r"^lowcarb_pods_filtered_total \S+$", text, re.M)
