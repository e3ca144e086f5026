"""Policy validation: every error at once, each with file, line, column, field path and a hint."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from scheduler.cli.main import app as lowcarb
from scheduler.cli.policy import schema_text
from scheduler.policy.model import DEFAULT_POLICY
from scheduler.policy.validate import PolicyError, load_policy, validate_text
from tests.support.policy import POLICIES, ROOT

SHIPPED = ["default.yaml", "training.yaml", "inference.yaml"]

BROKEN = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  providers:
    - name: em
      type: electricitymap
  fallback: [em, static]
  zones: {eu-a: eu-b, eu-b: eu-a}
power:
  pue: "high"
classes:
  training:
    selector:
      matchLabel: {app: train}
    prices: {gpuHourIdle: 0.5, carbonPerTonne: -0.2}
    expectedDuration: four hours
  batch:
    prices: {carbonPerTonne: 0}
    gpuMode: bestFit
  batch:
    prices: {carbonPerTonne: 0}
"""


def issues_of(text: str) -> list[str]:
    policy, issues = validate_text(text, "p.yaml")
    assert policy is None
    return [str(i) for i in issues]


def test_every_error_is_reported_with_line_column_and_path() -> None:
    found = issues_of(BROKEN)
    expected = [
        "p.yaml:6:13: carbon.providers[0].type: unknown provider type 'electricitymap'",
        "p.yaml:8:10: carbon.zones: zone mapping loop eu-a -> eu-b -> eu-a",
        "p.yaml:10:8: power.pue: must be a number (got 'high')",
        "p.yaml:14:7: classes.training.selector: unknown key 'matchLabel', did you mean "
        "'matchLabels'?",
        "p.yaml:15:48: classes.training.prices.carbonPerTonne: must be >= 0.0 (got -0.2)",
        "p.yaml:16:23: classes.training.expectedDuration: 'four hours' is not a duration",
        "p.yaml:20:3: classes.batch: duplicate class name 'batch' (first defined on line 17)",
    ]
    assert len(found) == len(expected), "\n".join(found)
    assert "did you mean 'electricitymaps'?" in found[0]
    for line, want in zip(found, expected, strict=True):
        assert line.startswith(want), f"{line!r} does not start with {want!r}"


def test_literal_choice_gets_a_hint() -> None:
    text = "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses:\n  batch:\n    gpuMode: bestFit\n"
    (issue,) = issues_of(text)
    assert issue.startswith("p.yaml:5:14: classes.batch.gpuMode: must be one of")
    assert "did you mean 'bestfit'?" in issue


def test_weights_in_a_v2_file_and_a_misspelt_class_price() -> None:
    text = (
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses:\n"
        "  a:\n    weights: {carbn: 1}\n"
        "  b:\n    prices: {carbonPerTone: 0}\n"
    )
    found = issues_of(text)
    # one message per removed key, at the key, naming the fix; nothing about the term inside
    assert found[0].startswith("p.yaml:5:5: classes.a.weights: class weights were removed in ")
    assert "delete this key" in found[0] and "lowcarb policy migrate p.yaml" in found[0]
    assert found[1].startswith("p.yaml:7:14: classes.b.prices: unknown key 'carbonPerTone', did")
    assert len(found) == 2


def test_selector_operators_and_residency_values() -> None:
    text = """\
apiVersion: lowcarb.dev/v2
kind: Policy
classes:
  a:
    selector:
      matchExpressions:
        - {key: tier, operator: In}
        - {key: tier, operator: Exist}
    constraints: {maxIntensity: 0}
    temporalShift: {maxDelay: 12, minSaving: 150%}
"""
    found = issues_of(text)
    assert found[0].startswith("p.yaml:7:11: classes.a.selector.matchExpressions[0]: operator In")
    assert found[1].startswith("p.yaml:8:33: classes.a.selector.matchExpressions[1].operator: ")
    assert "did you mean 'Exists'?" in found[1]
    assert found[2] == "p.yaml:9:33: classes.a.constraints.maxIntensity: must be > 0.0 (got 0)"
    assert found[3].startswith("p.yaml:10:31: classes.a.temporalShift.maxDelay: 12 has no unit")
    assert found[4].startswith("p.yaml:10:46: classes.a.temporalShift.minSaving: must be <= 1.0")


def test_yaml_syntax_error_and_wrong_document() -> None:
    (issue,) = issues_of("apiVersion: lowcarb.dev/v2\nclasses: {a: [1, 2}\n")
    assert issue.startswith("p.yaml:2:")
    assert "not valid YAML" in issue
    (issue,) = issues_of("")
    assert "empty" in issue
    (issue,) = issues_of("- 1\n- 2\n")
    assert "expected a mapping" in issue
    found = issues_of("apiVersion: v1\nkind: Deployment\n")
    assert found[0].startswith("p.yaml:1:13: apiVersion: must be one of 'lowcarb.dev/v2'")
    assert found[1].startswith("p.yaml:2:7: kind: must be one of 'Policy'")


def test_default_class_is_added_and_may_not_have_a_selector() -> None:
    policy = load_policy(None)
    assert list(policy.classes)[-1] == "default"
    text = (
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses:\n  default:\n"
        "    selector: {namespaces: [x]}\n"
    )
    (issue,) = issues_of(text)
    assert "classes.default.selector: the default class catches every pod" in issue
    ok, _ = validate_text("apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: {a: {}}\n")
    assert ok is not None and list(ok.classes) == ["a", "default"]


def test_load_policy_raises_with_every_issue(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert len(info.value.issues) == 7
    assert f"{path}:15:48: classes.training.prices.carbonPerTonne: must be >= 0" in str(info.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_are_valid(name: str) -> None:
    policy = load_policy(POLICIES / name)
    assert "default" in policy.classes


def test_cli_validate_exit_codes_and_messages(tmp_path: Path) -> None:
    runner = CliRunner()
    good = [str(POLICIES / n) for n in SHIPPED]
    result = runner.invoke(lowcarb, ["policy", "validate", *good])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok (") == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    result = runner.invoke(lowcarb, ["policy", "validate", good[0], str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:14:7: classes.training.selector: unknown key 'matchLabel'" in result.stderr
    assert f"{bad}: invalid (7 errors)" in result.stderr
    result = runner.invoke(lowcarb, ["policy", "validate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "cannot read the file" in result.stderr


def test_schema_file_matches_the_models() -> None:
    committed = (POLICIES / "schema.json").read_text()
    assert committed == schema_text(), (
        "policies/schema.json is out of date: run `lowcarb policy schema -o policies/schema.json`"
    )
    result = CliRunner().invoke(lowcarb, ["policy", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(committed)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_satisfy_the_json_schema(name: str) -> None:
    schema = json.loads((POLICIES / "schema.json").read_text())
    data = yaml.safe_load((POLICIES / name).read_text())
    jsonschema.validate(data, schema)


def test_schema_rejects_what_the_validator_rejects() -> None:
    schema = json.loads((POLICIES / "schema.json").read_text())
    data = yaml.safe_load((POLICIES / "default.yaml").read_text())
    data["classes"]["training"]["selector"]["matchLabel"] = {"a": "b"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_embedded_default_is_policies_default() -> None:
    assert DEFAULT_POLICY.read_bytes() == (POLICIES / "default.yaml").read_bytes(), (
        "scheduler/data/default.yaml must be a copy of policies/default.yaml"
    )
    assert DEFAULT_POLICY.is_relative_to(ROOT / "scheduler")


def test_cli_validate_json_github_and_stdin() -> None:
    runner = CliRunner()
    result = runner.invoke(lowcarb, ["policy", "validate", "--format", "json", "-"], input=BROKEN)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    issues = report["files"]["<stdin>"]["errors"]
    assert report["files"]["<stdin>"]["warnings"] == []
    assert len(issues) == 7
    assert issues[4] == {
        "file": "<stdin>",
        "line": 15,
        "column": 48,
        "path": "classes.training.prices.carbonPerTonne",
        "message": "must be >= 0.0 (got -0.2)",
    }
    result = runner.invoke(lowcarb, ["policy", "validate", "--format", "github", "-"], input=BROKEN)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    assert lines[4] == (
        "::error file=<stdin>,line=15,col=48,title=lowcarb policy::"
        "classes.training.prices.carbonPerTonne: must be >= 0.0 (got -0.2)"
    )
    good = (POLICIES / "default.yaml").read_text()
    result = runner.invoke(lowcarb, ["policy", "validate", "-"], input=good)
    assert result.exit_code == 0
    assert result.stdout.startswith("<stdin>: ok (classes: training, batch, inference, default")


WARNED = """\
apiVersion: lowcarb.dev/v2
kind: Policy
classes:
  training:
    selector: {ownerKinds: [PytorchJob, JobSet]}
  special: {}
  eu:
    selector: {namespaces: [eu-*]}
    constraints: {allowedZones: [SE*, Germany]}
"""


def test_warnings_are_reported_and_fail_only_with_strict(tmp_path: Path) -> None:
    path = tmp_path / "warned.yaml"
    path.write_text(WARNED)
    runner = CliRunner()
    result = runner.invoke(lowcarb, ["policy", "validate", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        f"{path}:5:29: warning: classes.training.selector.ownerKinds[0]: owner kind "
        "'PytorchJob' is not a kind lowcarb knows, did you mean 'PyTorchJob'? (kinds are "
        "case-sensitive; a custom controller's kind is fine)",
        f"{path}:6:12: warning: classes.special: class 'special' has no selector: only pods "
        "annotated lowcarb.dev/class: special get it",
        f"{path}:9:39: warning: classes.eu.constraints.allowedZones[1]: zone pattern 'Germany' "
        "matches no zone of the built-in table or of carbon.static / carbon.zones; zone keys "
        "look like 'DE', 'SE-SE3', 'US-CAL-CISO'",
    ]
    assert f"{path}: ok (" in result.stdout
    result = runner.invoke(lowcarb, ["policy", "validate", "--strict", str(path)])
    assert result.exit_code == 1
    assert f"{path}: warnings with --strict" in result.stderr
    result = runner.invoke(lowcarb, ["policy", "validate", "--format", "github", str(path)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith(f"::warning file={path},line=5,col=29,")
