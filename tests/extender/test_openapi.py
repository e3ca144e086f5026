"""The OpenAPI contract: ``docs/openapi.json`` is what ``lowcarb openapi`` writes (and what the
server answers, see test_docs), its references resolve, every error is the one error model, and
the captured kube-scheduler payloads are valid bodies of the verbs it documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from scheduler.cli.main import app as lowcarb

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "openapi.json"
FIXTURES = REPO / "tests" / "fixtures" / "kube-scheduler"
VERB_BODIES = {
    "filter": "ExtenderArgs",
    "prioritize": "ExtenderArgs",
    "bind": "ExtenderBindingArgs",
    "preempt": "ExtenderPreemptionArgs",
}


def run_openapi(*args: str) -> str:
    result = CliRunner().invoke(lowcarb, ["openapi", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(COMMITTED.read_text())
    return data


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_committed_document_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    run_openapi("--output", str(out))
    assert out.read_text() == COMMITTED.read_text(), (
        "docs/openapi.json is out of date: run `lowcarb openapi -o docs/openapi.json`"
    )
    assert run_openapi() == COMMITTED.read_text()  # stdout gives the same document


def test_url_prefix_moves_the_verbs_only() -> None:
    prefixed = json.loads(run_openapi("--url-prefix", "/scheduler/"))
    paths = set(prefixed["paths"])
    assert {f"/scheduler/{verb}" for verb in VERB_BODIES} <= paths
    assert not {f"/{verb}" for verb in VERB_BODIES} & paths
    assert {"/healthz", "/readyz", "/metrics", "/explain", "/report"} <= paths


def test_every_reference_resolves_and_every_schema_is_valid(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for ref in set(refs(doc)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert "HTTPValidationError" not in json.dumps(schema), name


def test_every_error_answer_is_the_one_error_model(doc: dict[str, Any]) -> None:
    error = {"$ref": "#/components/schemas/ErrorBody"}
    seen = 0
    for method, path, operation in operations(doc):
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")) and not (path == "/readyz" and status == "503"):
                assert answer["content"]["application/json"]["schema"] == error, (path, status)
                seen += 1
        assert operation.get("operationId"), (method, path)
    assert seen >= 20
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {
        "code",
        "message",
        "field",
    }


def test_every_route_is_documented(doc: dict[str, Any]) -> None:
    assert {(m.upper(), p) for m, p, _ in operations(doc)} == {
        ("POST", "/filter"),
        ("POST", "/prioritize"),
        ("POST", "/bind"),
        ("POST", "/preempt"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/explain"),
        ("POST", "/explain"),
        ("GET", "/report"),
        ("POST", "/mutate/carbon-window"),
    }


def body_validator(doc: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("version", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_captured_kube_scheduler_bodies_match_the_documented_verbs(
    doc: dict[str, Any], version: str
) -> None:
    for verb, component in VERB_BODIES.items():
        body = doc["paths"][f"/{verb}"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{component}"}
        for cache in ("true", "false"):
            payload = json.loads((FIXTURES / version / f"{verb}.args.nodeCacheCapable-{cache}.json")
                                 .read_text())  # fmt: skip
            errors = list(body_validator(doc, component).iter_errors(payload))
            assert errors == [], (verb, cache, [e.message for e in errors][:3])
    # and the documented shapes reject what the server rejects
    assert list(body_validator(doc, "ExtenderArgs").iter_errors({"NodeNames": {"a": 1}}))
    assert list(body_validator(doc, "ExtenderBindingArgs").iter_errors({"PodUID": 5}))
