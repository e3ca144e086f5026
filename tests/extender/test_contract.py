"""What the service really answers matches its typed contract: ``/explain`` (both forms) and
``/report`` (json and sci, several groupings) from a real ledger, and the admission webhook's
review in and out, each checked by the pydantic model the OpenAPI document publishes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger
from scheduler import wire
from scheduler.api.admission import AdmissionReviewRequest, AdmissionReviewResponse
from scheduler.api.explain import Explanation
from scheduler.api.report import Report, SciReport
from scheduler.app import Runtime, ServeOptions, build_runtime
from tests.support.fakeapi import fixture
from tests.support.ledger import ListHistory, hourly, placement, run
from tests.support.serve import uvicorn_serving

DAY0 = datetime(2023, 6, 13, tzinfo=UTC)
PODS = 24


def strict(model: type[BaseModel], data: Any) -> BaseModel:
    """``data`` validated by ``model`` and written back unchanged: no key the model does not
    know, none it would add."""
    parsed = model.model_validate(data)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == data
    return parsed


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 pods over a day in DE/FR/GB, accounted through the real Accountant."""
    path = tmp_path_factory.mktemp("contract") / "ledger.sqlite"

    async def fill() -> None:
        history = ListHistory(
            {
                "DE": hourly("DE", DAY0, [300.0 + 10 * (h % 6) for h in range(48)]),
                "FR": hourly("FR", DAY0, [55.0] * 48),
                "GB": hourly("GB", DAY0, [210.0] * 12),  # later runs: estimated
            }
        )
        with Ledger(path) as ledger:
            for i in range(PODS):
                start = (DAY0 + timedelta(hours=i)).timestamp()
                await ledger.append_async(placement(i, start - 30))
                for rec in run(f"uid-{i:06d}", start, start + 1800 * (1 + i % 3)):
                    await ledger.append_async(rec)
            assert await Accountant(ledger, history).account_pending() == PODS

    asyncio.run(fill())
    return path


@pytest.fixture
async def served(ledger_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    runtime = build_runtime(ServeOptions(ledger=ledger_path))
    for node in json.loads(fixture("nodes-list.json"))["items"]:
        runtime.state.upsert_node(wire.decode_node(json.dumps(node).encode()))
    async with uvicorn_serving(runtime.app) as url:
        yield runtime, url


async def test_explain_answers_match_the_model(served: tuple[Runtime, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post("/explain", content=fixture("pods-get.json"))
    assert answer.status_code == 200, answer.text
    data = answer.json()
    result = strict(Explanation, data)
    assert isinstance(result, Explanation)
    assert result.klass == data["class"] and len(result.nodes) == 6
    feasible = [n for n in result.nodes if n.feasible]
    assert feasible and all(set(n.terms) == {"carbon", "gpu_fit"} for n in feasible)
    assert all(n.reason for n in result.nodes if not n.feasible)


@pytest.mark.parametrize(
    ("query", "model"),
    [
        ({"format": "json"}, Report),
        ({"format": "json", "group-by": "zone,day"}, Report),
        ({"format": "json", "group-by": "pod"}, Report),
        ({"format": "json", "group-by": "class,node,job", "from": "2023-06-13T06:00:00Z"}, Report),
        ({"format": "sci"}, SciReport),
        ({"format": "sci", "sci-unit": "gpu-hour", "group-by": "namespace"}, SciReport),
    ],
)
async def test_report_answers_match_the_models(
    served: tuple[Runtime, str], query: dict[str, str], model: type[BaseModel]
) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answer = await client.get("/report", params=query)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    data = answer.json()
    assert data["rows"], query
    strict(model, data)


async def test_report_other_formats_have_their_media_types(served: tuple[Runtime, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        csv = await client.get("/report", params={"format": "csv", "group-by": "zone"})
        parquet = await client.get("/report", params={"format": "parquet"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith('"zone","pods","jobs",')
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert parquet.content[:4] == b"PAR1"


def review(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "e2e",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


async def test_webhook_review_in_and_out_match_the_models(served: tuple[Runtime, str]) -> None:
    _, url = served
    body = review(json.loads(fixture("watch-demo-pod-create.request.json")))
    AdmissionReviewRequest.model_validate(body)  # what the API server sends is the documented body
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post("/mutate/carbon-window", json=body)
    assert answer.status_code == 200, answer.text
    out = strict(AdmissionReviewResponse, answer.json())
    assert isinstance(out, AdmissionReviewResponse)
    assert out.response.uid == body["request"]["uid"] and out.response.allowed is True
