"""One error model for every route, written by one handler: each way a request can fail, against
the service's app under uvicorn on 127.0.0.1, answers ``{"error": {"code", "message", "field"}}``
(validated by the model itself) with its status, and the server keeps serving."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from scheduler.api.errors import ErrorBody
from scheduler.app import ServeOptions, build_runtime
from scheduler.gates.webhook import MAX_BODY as WEBHOOK_MAX_BODY
from tests.support.serve import uvicorn_serving

REPO = Path(__file__).resolve().parents[2]
POD = REPO / "tests" / "fixtures" / "kube-apiserver" / "pods-get.json"
MAX_BODY = 4096


def crashing_router() -> APIRouter:
    """A route with a bug, to see what an unexpected exception answers."""
    router = APIRouter()

    @router.get("/crash")
    async def crash() -> dict[str, Any]:
        raise KeyError("a bug")

    return router


@pytest.fixture
async def base() -> AsyncIterator[str]:
    options = ServeOptions(url_prefix="/scheduler", max_body=MAX_BODY)
    runtime = build_runtime(options, routers=[crashing_router()])
    async with uvicorn_serving(runtime.app) as url:
        yield url


def unparsable_pod() -> bytes:
    pod = json.loads(POD.read_text())
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    return json.dumps(pod).encode()


# (method, path, body, status, code, field, words in the message)
CASES: list[tuple[str, str, bytes | None, int, str, str | None, str]] = [
    ("GET", "/nowhere", None, 404, "not_found", None, "no route GET /nowhere"),
    ("GET", "/scheduler/filter", None, 405, "method_not_allowed", None, "use POST"),
    ("DELETE", "/explain", None, 405, "method_not_allowed", None, "method not allowed"),
    ("POST", "/scheduler/filter", b"[1, 2]", 400, "bad_request", "body", "not ExtenderArgs"),
    ("POST", "/scheduler/bind", b"{]", 400, "bad_request", "body", "not valid JSON"),
    ("POST", "/scheduler/preempt", b"x" * (MAX_BODY + 1), 413, "too_large", "body", "--max-body"),
    ("GET", "/explain", None, 400, "bad_request", "pod", "query parameter pod is required"),
    ("GET", "/explain?pod=only-a-name", None, 400, "bad_request", "pod", "give namespace/name"),
    ("GET", "/explain?pod=ml/job-0", None, 409, "conflict", None, "POST the Pod manifest"),
    ("POST", "/explain", b"{not json", 400, "bad_request", "body", "not a Pod manifest"),
    ("POST", "/explain", unparsable_pod(), 422, "unprocessable", "pod", "requests['cpu']"),
    ("GET", "/report?format=xml", None, 400, "bad_request", "format", "'xml'"),
    ("GET", "/report?sci-unit=furlong", None, 400, "bad_request", "sci-unit", "'furlong'"),
    ("GET", "/report", None, 404, "not_found", None, "--ledger"),
    ("POST", "/mutate/carbon-window", b"[]", 400, "bad_request", "body", "AdmissionReview"),
    ("POST", "/mutate/carbon-window", b" " * (WEBHOOK_MAX_BODY + 1), 413, "too_large", "body", ""),
    ("GET", "/crash", None, 500, "internal", None, "KeyError"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field", "words"),
    CASES,
    ids=[f"{m} {p.split('?')[0]} {s}" for m, p, _, s, *_ in CASES],
)
async def test_every_error_is_the_one_model(
    base: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
    field: str | None,
    words: str,
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        answer = await client.request(method, path, content=body)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        error = ErrorBody.model_validate_json(answer.content).error  # nothing more, nothing less
        assert (error.code, error.field) == (code, field)
        assert words in error.message
        assert "\n" not in error.message  # one line
        assert (await client.get("/healthz")).text == "ok"  # still serving


async def test_405_says_which_methods_are_allowed(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.put("/scheduler/prioritize")
    assert answer.headers["allow"] == "POST"


def test_no_route_writes_its_own_error_body() -> None:
    """The one handler is the only place an error body is written (no JSONResponse({"error"...})
    left in a route)."""
    writers = []
    for path in sorted((REPO / "scheduler").rglob("*.py")):
        text = path.read_text()
        if re.search(r"""JSONResponse\(\s*\{\s*["']error["']""", text):
            writers.append(str(path.relative_to(REPO)))
    assert writers == []
