"""One duration grammar across the whole policy: every duration field takes '5m', '1h30m',
'250ms', and rejects a bare number with the fix in the message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from carbon.duration import DURATION_PATTERN, format_duration, parse_duration
from scheduler.cli.policy import policy_schema
from scheduler.policy.model import Policy, dump_yaml
from scheduler.policy.validate import policy_from_text, validate_text

# A valid policy in which every duration field is present (the class and provider names are the
# ones the paths below use).
BASE: dict[str, Any] = {
    "apiVersion": "lowcarb.dev/v2",
    "kind": "Policy",
    "carbon": {
        "providers": [
            {
                "name": "em",
                "type": "electricitymaps",
                "refresh": "15m",
                "timeout": "5s",
                "forecastHorizon": "24h",
            }
        ],
        "fallback": ["em", "static"],
        "staleAfter": "2h",
        "backoff": {"initial": "10s", "max": "10m"},
        "circuit": {"failures": 5, "openFor": "5m"},
    },
    "gpu": {"window": "24h"},
    "prices": {"scarcityHorizon": "48h"},
    "accounting": {"prometheus": {"url": "http://prometheus:9090", "timeout": "10s"}},
    "classes": {
        "batch": {
            "selector": {"ownerKinds": ["Job"]},
            "expectedDuration": "2h",
            "temporalShift": {"maxDelay": "12h"},
        }
    },
}

DURATION_FIELDS = [
    "carbon.providers[0].refresh",
    "carbon.providers[0].timeout",
    "carbon.providers[0].forecastHorizon",
    "carbon.staleAfter",
    "carbon.backoff.initial",
    "carbon.backoff.max",
    "carbon.circuit.openFor",
    "gpu.window",
    "prices.scarcityHorizon",
    "accounting.prometheus.timeout",
    "accounting.settleAfter",
    "classes.batch.expectedDuration",
    "classes.batch.temporalShift.maxDelay",
]


def with_value(path: str, value: object) -> str:
    doc = copy.deepcopy(BASE)
    *parents, last = path.replace("[0]", ".0").split(".")
    node: Any = doc
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    node[last] = value
    return yaml.safe_dump(doc, sort_keys=False)


def schema_duration_paths() -> set[str]:
    """Paths of every property whose JSON Schema is the duration string (from the models)."""
    schema = policy_schema()
    defs = schema["$defs"]
    found: set[str] = set()
    names = {"carbon.providers": "[0]", "classes": ".batch"}

    def walk(node: dict[str, Any], path: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if node.get("pattern") == DURATION_PATTERN:
            found.add(path)
        for option in node.get("anyOf", []):
            walk(option, path)
        for key, prop in node.get("properties", {}).items():
            walk(prop, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + names.get(path, "[0]"))
        values = [node.get("additionalProperties"), *node.get("patternProperties", {}).values()]
        for value in values:
            if isinstance(value, dict):
                walk(value, path + names.get(path, ".key"))

    walk(schema, "")
    return found


def test_the_list_covers_every_duration_field_of_the_models() -> None:
    assert schema_duration_paths() == set(DURATION_FIELDS)


def test_base_policy_is_valid() -> None:
    policy, issues = validate_text(yaml.safe_dump(BASE), "p.yaml")
    assert issues == [] and policy is not None


@pytest.mark.parametrize("path", DURATION_FIELDS)
@pytest.mark.parametrize("number", [5, 7200, 0.5])
def test_a_bare_number_is_an_error_with_the_fix(path: str, number: float) -> None:
    policy, issues = validate_text(with_value(path, number), "p.yaml")
    assert policy is None
    [issue] = issues
    assert issue.path == path
    assert f"{number}m" in issue.message and f"{number}s" in issue.message


@pytest.mark.parametrize("path", DURATION_FIELDS)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("1h30m0s", 5400.0), ("250ms", 0.25)],
)
def test_every_field_reads_the_same_grammar(path: str, text: str, seconds: float) -> None:
    policy = policy_from_text(with_value(path, text))
    dumped = yaml.safe_load(dump_yaml(policy))
    node: Any = dumped
    for step in path.replace("[0]", ".0").split("."):
        node = node[int(step)] if step.isdigit() else node[step]
    assert parse_duration(node) == seconds  # written back as a duration string, same value


@pytest.mark.parametrize("path", DURATION_FIELDS)
@pytest.mark.parametrize("bad", ["5 minutes", "0s", True])
def test_other_non_durations_are_errors_at_the_field(path: str, bad: object) -> None:
    policy, issues = validate_text(with_value(path, bad), "p.yaml")
    assert policy is None
    assert [i.path for i in issues] == [path]


def test_a_dumped_policy_validates_again_to_the_same_policy() -> None:
    policy = policy_from_text(yaml.safe_dump(BASE))
    assert policy_from_text(dump_yaml(policy)) == policy
    assert policy_from_text(dump_yaml(Policy())) == Policy()


@pytest.mark.parametrize(
    "seconds", [0.001, 0.25, 1.5, 45.0, 300.0, 5400.0, 86400.0, 90061.0, 3600.1, 1e-7]
)
def test_format_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
