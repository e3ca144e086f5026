"""Binder, pod patches and Events against the fake API server (recorded bodies, real HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from scheduler import kube, wire
from scheduler.names import ANN_DECISION, ANN_GPU_INDEX
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Recorded,
    Reply,
    fixture,
    rbac_checked,
)

NS = "e2e"
BIND_PATH = "/api/v1/namespaces/e2e/pods/bind-me/binding"
POD_PATH = "/api/v1/namespaces/e2e/pods/bind-me"
UID = "d7c1e8a5-0000-4000-8000-000000000001"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked() as server:  # every call covered by the RBAC deploy/ ships
        yield server


@pytest.fixture
async def client(api: FakeApiServer) -> AsyncIterator[kube.KubeClient]:
    c = kube.KubeClient(kube.KubeConfig(host=api.url, token="t"))
    yield c
    await c.aclose()


async def test_bind_is_one_call_with_the_annotations_on_the_binding(
    api: FakeApiServer, client: kube.KubeClient
) -> None:
    api.add("POST", BIND_PATH, Reply(201, fixture("binding-create.json")))
    decision = {"region": "us-east", "zone": "us-east-1a", "score": 9}
    binder = kube.Binder(client)
    error = await binder.bind(
        NS, "bind-me", UID, "use1-a-gpu", {ANN_DECISION: decision, ANN_GPU_INDEX: [0, 1]}
    )
    assert error == ""
    (post,) = api.requests  # no annotation patch: one API call per bind
    sent = post.json()
    annotations = sent["metadata"].pop("annotations")
    recorded = json.loads(fixture("binding-create.request.json"))
    recorded["metadata"]["uid"] = UID
    assert sent == recorded  # otherwise exactly the Binding kube-apiserver accepted
    assert post.content_type == "application/json"
    assert all(isinstance(v, str) for v in annotations.values())  # numbers give 422
    assert annotations[ANN_GPU_INDEX] == "0,1"
    assert json.loads(annotations[ANN_DECISION]) == decision


async def test_the_api_server_copies_the_bindings_annotations_onto_the_pod(
    api: FakeApiServer, client: kube.KubeClient
) -> None:
    """Against the pod store: nodeName and the annotations arrive in one write (one watch event),
    a value already on the pod under the same key is replaced, other annotations stay."""
    store = PodStore(api, selectors=True).install()
    pod = store.add_pod("bind-me", gates=[], annotations={ANN_GPU_INDEX: "7", "keep": "me"})
    rv = pod["metadata"]["resourceVersion"]
    uid = pod["metadata"]["uid"]
    seen: list[tuple[str, wire.Pod]] = []

    async def watch() -> None:
        async for kind, raw in client.watch("/api/v1/pods", {}, rv, 5):
            seen.append((kind, wire.decode_pod(raw)))
            return

    watcher = asyncio.create_task(watch())
    decision = json.dumps({"node": "use1-a-gpu", "note": "x" * 2000})
    error = await kube.Binder(client).bind(
        NS, "bind-me", uid, "use1-a-gpu", {ANN_DECISION: decision, ANN_GPU_INDEX: "3"}
    )
    assert error == ""
    await asyncio.wait_for(watcher, 5)
    got = await client.get_pod(NS, "bind-me")
    assert got.spec.nodeName == "use1-a-gpu"
    assert got.metadata.annotations == {ANN_GPU_INDEX: "3", "keep": "me", ANN_DECISION: decision}
    ((kind, event),) = seen
    assert kind == "MODIFIED" and event.spec.nodeName == "use1-a-gpu"
    assert event.metadata.annotations == got.metadata.annotations  # the same write
    assert [r.method for r in api.requests if not r.is_watch] == ["POST", "GET"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("stale-uid", "Precondition failed: UID in precondition: stale"),
        ("bound", 'is already assigned to node "usw2-a-gpu"'),
        ("gated", "non-empty .spec.schedulingGates"),
        ("missing", 'pods "bind-me" not found'),
    ],
)
async def test_a_refused_binding_leaves_the_pod_unannotated(
    api: FakeApiServer, client: kube.KubeClient, setup: str, expected: str
) -> None:
    store = PodStore(api).install()
    if setup != "missing":
        store.add_pod(
            "bind-me",
            gates=["other.example/gate"] if setup == "gated" else [],
            spec={"nodeName": "usw2-a-gpu"} if setup == "bound" else None,
        )
    uid = "stale" if setup == "stale-uid" else "uid-bind-me"
    error = await kube.Binder(client).bind(NS, "bind-me", uid, "use1-a-gpu", {ANN_GPU_INDEX: "3"})
    assert error.startswith(f"bind pod {NS}/bind-me to node use1-a-gpu: ") and expected in error
    if setup != "missing":
        pod = store.pods["bind-me"]
        assert ANN_GPU_INDEX not in (pod["metadata"].get("annotations") or {})
        assert pod["spec"].get("nodeName", "") == ("usw2-a-gpu" if setup == "bound" else "")
    assert store.bindings == []


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (409, "binding-already-bound.json", 'is already assigned to node "use1-a-gpu"'),
        (409, "binding-wrong-uid.json", "Precondition failed: UID in precondition"),
        (404, "binding-pod-not-found.json", 'pods "does-not-exist" not found'),
        (400, "binding-name-mismatch.json", "name in URL does not match name in Binding"),
        (409, "gates-binding-gated-pod.json", "non-empty .spec.schedulingGates"),
    ],
)
async def test_bind_failures_return_the_api_message(
    api: FakeApiServer, client: kube.KubeClient, status: int, name: str, expected: str
) -> None:
    api.add("POST", BIND_PATH, Reply(status, fixture(name)))
    error = await kube.Binder(client).bind(NS, "bind-me", UID, "usw2-a-gpu", {ANN_GPU_INDEX: "3"})
    assert error.startswith(f"bind pod e2e/bind-me to node usw2-a-gpu: {status} ")
    assert expected in error
    assert [r.method for r in api.requests] == ["POST"]


async def test_bind_when_api_server_is_down(api: FakeApiServer, client: kube.KubeClient) -> None:
    api.outage = True
    error = await kube.Binder(client).bind(NS, "bind-me", UID, "use1-a-gpu")
    assert "API server unreachable" in error


async def test_patch_pod_errors_carry_status(api: FakeApiServer, client: kube.KubeClient) -> None:
    api.add("PATCH", POD_PATH, Reply(422, fixture("annotations-merge-patch-non-string.json")))
    with pytest.raises(kube.ApiError) as info:
        await client.patch_pod(NS, "bind-me", {"metadata": {"annotations": {"x": 0}}})
    assert info.value.code == 422 and info.value.reason == "Invalid"
    assert "cannot unmarshal number" in str(info.value)


async def test_patch_pod_json_patch_returns_pod(
    api: FakeApiServer, client: kube.KubeClient
) -> None:
    path = "/api/v1/namespaces/e2e/pods/gated-train"
    api.add("PATCH", path, Reply(200, fixture("gates-jsonpatch-test-remove.json")))
    ops = json.loads(fixture("gates-jsonpatch-test-remove.request.json"))
    pod = await client.patch_pod(NS, "gated-train", ops, "json")
    assert [g.name for g in pod.spec.schedulingGates or []] == ["other.example/gate"]
    assert api.requests[0].content_type == "application/json-patch+json"
    assert api.requests[0].json() == ops


def _pod() -> wire.Pod:
    return wire.decode_pod(fixture("pods-get.json"))


async def test_event_v1_has_six_fractional_digits(
    api: FakeApiServer, client: kube.KubeClient
) -> None:
    def answer(req: Recorded) -> Reply:
        time = req.json()["eventTime"]
        if len(time.rsplit(".", 1)[-1]) != 7:  # 6 digits + Z, as the API server insists
            return Reply(400, fixture("events-v1-create-eventTime-no-micros.json"))
        return Reply(201, fixture("events-v1-create.json"))

    api.add("POST", "/apis/events.k8s.io/v1/namespaces/e2e/events", answer)
    on_the_second = datetime(2026, 11, 28, 12, 12, 54, 0, tzinfo=UTC)  # microsecond == 0
    await client.create_event(
        _pod(), reason="CarbonHold", note="held", action="Hold", now=on_the_second
    )
    event = api.requests[0].json()
    assert event["eventTime"] == "2026-11-28T12:12:54.000000Z"
    recorded = json.loads(fixture("events-v1-create.request.json"))
    assert set(recorded) <= set(event)  # every field the real call sent
    assert event["regarding"]["name"] == "train-h100" and event["regarding"]["kind"] == "Pod"


async def test_event_core_v1(api: FakeApiServer, client: kube.KubeClient) -> None:
    api.add(
        "POST", "/api/v1/namespaces/e2e/events", Reply(201, fixture("events-core-v1-create.json"))
    )
    await client.create_event(_pod(), reason="CarbonHold", note="n", action="Hold", api="core")
    event = api.requests[0].json()
    recorded = json.loads(fixture("events-core-v1-create.request.json"))
    assert set(recorded) <= set(event)
    assert event["involvedObject"]["uid"] == _pod().metadata.uid


async def test_event_rejected_raises(api: FakeApiServer, client: kube.KubeClient) -> None:
    api.add(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/e2e/events",
        Reply(422, fixture("events-v1-create-missing-fields.json")),
    )
    with pytest.raises(kube.ApiError, match="422 Invalid"):
        await client.create_event(_pod(), reason="R", note="n", action="A")


def test_micro_time_always_has_microseconds() -> None:
    assert kube.micro_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"


def test_required_permissions_cover_every_call_path() -> None:
    perms = set(kube.REQUIRED_PERMISSIONS)
    assert ("", "pods/binding", "create") in perms
    assert all(verb in {"get", "list", "watch", "patch", "create"} for _, _, verb in perms)


async def test_slow_binding_answers_within_the_bind_timeout(
    api: FakeApiServer, client: kube.KubeClient
) -> None:
    import threading

    release = threading.Event()

    def stuck(req: Recorded) -> Reply:
        release.wait(5)  # an API server slower than kube-scheduler's httpTimeout
        return Reply(201, fixture("binding-create.json"))

    api.add("POST", BIND_PATH, stuck)
    try:
        error = await kube.Binder(client, timeout_s=0.2).bind(NS, "bind-me", UID, "use1-a-gpu")
    finally:
        release.set()
    assert error.startswith(
        f"bind pod {NS}/bind-me to node use1-a-gpu: API server unreachable: POST {BIND_PATH}: "
        "timed out waiting for the answer ("
    ), error
