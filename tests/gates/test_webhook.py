"""The mutating webhook that opts a class into temporal shifting, over real HTTP (uvicorn)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from scheduler.api import errors
from scheduler.gates import webhook as admission
from scheduler.gates.request import GATE
from scheduler.policy.model import Policy
from tests.support.fakeapi import fixture
from tests.support.serve import uvicorn_serving

POLICY = Policy.model_validate(
    {
        "classes": {
            "batch": {
                "selector": {"matchLabels": {"app": "demo"}},
                "temporalShift": {"maxDelay": "12h", "minSaving": 0.2},
            },
            "paused": {
                "selector": {"matchLabels": {"app": "paused"}},
                "temporalShift": {"enabled": False, "maxDelay": "12h"},
            },
        }
    }
)


def review(pod: dict[str, Any], operation: str = "CREATE", kind: str = "Pod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "e2e",
            "operation": operation,
            "object": pod,
        },
    }


def recorded_create(name: str) -> dict[str, Any]:
    """The body a client POSTed to create a pod (recorded), as the webhook receives it."""
    data: dict[str, Any] = json.loads(fixture(name))
    return data


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = FastAPI()
    app.include_router(admission.router(lambda: POLICY))
    errors.install(app)
    async with uvicorn_serving(app) as base:
        yield f"{base}{admission.PATH}"


async def post(url: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post(url, content=content)


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]] | None:
    response = answer["response"]
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


async def test_class_with_temporal_shift_gets_the_gate(url: str) -> None:
    pod = recorded_create("watch-demo-pod-create.request.json")  # app=demo, no gates
    r = await post(url, review(pod))
    assert r.status_code == 200
    answer = r.json()
    assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert answer["response"]["allowed"] is True
    assert patch_of(answer) == [
        {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}
    ]


async def test_existing_gates_are_kept_and_ours_appended(url: str) -> None:
    pod = recorded_create("watch-demo-pod-create.request.json")
    pod["spec"]["schedulingGates"] = [{"name": "other.example/gate"}]
    answer = (await post(url, review(pod))).json()
    assert patch_of(answer) == [
        {"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GATE}}
    ]


@pytest.mark.parametrize(
    "change",
    ["already-gated", "other-class", "disabled", "bound", "update", "not-a-pod"],
)
async def test_pods_that_pass_unchanged(url: str, change: str) -> None:
    pod = recorded_create("watch-demo-pod-create.request.json")
    operation, kind = "CREATE", "Pod"
    if change == "already-gated":
        pod = recorded_create("gates-pod-create.request.json")
        pod["metadata"]["labels"] = {"app": "demo"}
    elif change == "other-class":
        pod["metadata"]["labels"] = {"app": "web"}
    elif change == "disabled":
        pod["metadata"]["labels"] = {"app": "paused"}
    elif change == "bound":
        pod["spec"]["nodeName"] = "usw2-a-gpu"
    elif change == "update":
        operation = "UPDATE"
    else:
        kind = "ConfigMap"
    answer = (await post(url, review(pod, operation, kind))).json()
    assert answer["response"]["allowed"] is True
    assert patch_of(answer) is None


async def test_bad_bodies(url: str) -> None:
    r = await post(url, b"{not json")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "bad_request",
        "message": "body is not valid JSON: unexpected 'not json' at line 1, column 2",
        "field": "body",
    }
    r = await post(url, {"apiVersion": "admission.k8s.io/v1", "request": {"kind": {}}})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "body is not an admission.k8s.io/v1 AdmissionReview: "
        "request.uid: expected a string, got nothing (missing)"
    )
    r = await post(url, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
    assert r.status_code == 400 and "request" in r.json()["error"]["message"]
    # an unreadable pod is allowed unchanged, with a warning: the webhook never blocks pods
    bad = review({"metadata": "not-an-object"})
    answer = (await post(url, bad)).json()
    assert answer["response"]["allowed"] is True
    assert answer["response"]["warnings"] == [
        "lowcarb: pod not read, left unchanged: "
        "the pod is not a v1.Pod: metadata: expected a JSON object, got a string"
    ]
    r = await post(url, b" " * (admission.MAX_BODY + 1))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
