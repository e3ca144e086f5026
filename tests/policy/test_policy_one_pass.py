"""Every error of a policy in one pass: cross-field problems (fallback chain, zone-mapping loop,
class names, selector requirements, the default class) are reported beside wrong fields,
and a YAML 1.1 surprise (``NO`` read as false) says to quote the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli.main import app as lowcarb
from scheduler.policy.validate import validate_text

# Field errors and cross-field problems in the same models: each cross-field problem used to
# appear only once the field errors around it were fixed.
TOGETHER = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  providers:
    - name: em
      type: electricitymaps
      refresh: soon
      timeout: 30
  fallback: [em]
  staleAfter: 7200
  zones: {eu-a: eu-b, eu-b: eu-a, lab: 5}
power:
  pue: high
classes:
  Training:
    selector:
      matchLabel: {app: train}
      matchExpressions:
        - {key: "", operator: In}
    prices: {gpuHourIdle: 0.5, carbonPerTonne: -0.2}
    expectedDuration: four hours
  batch:
    prices: {fullScale: 0}
    gpuMode: bestFit
  default:
    selector: {namespaces: [x]}
    signal: marginl
"""

# (line, column, path, a word of the message): lowcarb's own messages, not a dependency's
EXPECTED = [
    (7, 16, "carbon.providers[0].refresh", "not a duration"),
    (8, 16, "carbon.providers[0].timeout", "write 30m or 30s"),
    (9, 13, "carbon.fallback", "add 'static'"),
    (10, 15, "carbon.staleAfter", "write 7200m or 7200s"),
    (11, 10, "carbon.zones", "loop eu-a -> eu-b -> eu-a"),
    (11, 40, "carbon.zones.lab", "must be a string"),
    (13, 8, "power.pue", "must be a number"),
    (15, 3, "classes.Training", "must be lower-case"),
    (17, 7, "classes.Training.selector", "did you mean 'matchLabels'"),
    (19, 11, "classes.Training.selector.matchExpressions[0]", "needs a non-empty 'values'"),
    (19, 17, "classes.Training.selector.matchExpressions[0].key", "must not be empty"),
    (20, 48, "classes.Training.prices.carbonPerTonne", "must be >= 0"),
    (21, 23, "classes.Training.expectedDuration", "not a duration"),
    (23, 25, "classes.batch.prices.fullScale", "must be > 0"),
    (24, 14, "classes.batch.gpuMode", "did you mean 'bestfit'"),
    (26, 15, "classes.default.selector", "remove its selector"),
    (27, 13, "classes.default.signal", "did you mean 'marginal'"),
]


def test_field_and_cross_field_errors_are_reported_together() -> None:
    policy, issues = validate_text(TOGETHER, "p.yaml")
    assert policy is None
    found = [(i.line, i.column, i.path) for i in issues]
    assert found == [(line, col, path) for line, col, path, _ in EXPECTED], "\n".join(
        map(str, issues)
    )
    for issue, (*_, word) in zip(issues, EXPECTED, strict=True):
        assert word in issue.message, str(issue)


def test_fixing_the_reported_errors_leaves_nothing_hidden() -> None:
    fixed = (
        TOGETHER.replace("refresh: soon", "refresh: 5m")
        .replace("timeout: 30", "timeout: 30s")
        .replace("fallback: [em]", "fallback: [em, static]")
        .replace("staleAfter: 7200", "staleAfter: 2h")
        .replace("eu-b: eu-a, lab: 5", "eu-b: DE, lab: eu-a")
        .replace("pue: high", "pue: 1.3")
        .replace("  Training:", "  training:")
        .replace("matchLabel:", "matchLabels:")
        .replace('{key: "", operator: In}', "{key: tier, operator: In, values: [gold]}")
        .replace("carbonPerTonne: -0.2", "carbonPerTonne: 0.2")
        .replace("four hours", "4h")
        .replace("{fullScale: 0}", "{fullScale: 2}")
        .replace("bestFit", "bestfit")
        .replace("    selector: {namespaces: [x]}\n    signal: marginl", "    signal: marginal")
    )
    policy, issues = validate_text(fixed, "p.yaml")
    assert issues == [] and policy is not None
    assert list(policy.classes) == ["training", "batch", "default"]


def test_cli_prints_every_error_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TOGETHER)
    result = CliRunner().invoke(lowcarb, ["policy", "validate", str(path)])
    assert result.exit_code == 1
    lines = [line.removeprefix(f"{path}:") for line in result.stderr.splitlines()]
    assert [tuple(map(int, line.split(":")[:2])) for line in lines[:-1]] == [
        (line, col) for line, col, *_ in EXPECTED
    ]
    assert f"{path}: invalid ({len(EXPECTED)} errors)" in result.stderr


NORWAY = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  zones: {eu-north-1: NO}
accounting:
  marketFactors: {NO: 5, SE: 10}
classes:
  nordic:
    selector:
      namespaces: [nordic]
      matchLabels: {tier: }
    constraints: {allowedZones: [SE, no, Off]}
"""


def test_yaml_11_booleans_get_a_quote_hint() -> None:
    policy, issues = validate_text(NORWAY, "p.yaml")
    assert policy is None
    found = {i.path: i for i in issues}
    assert list(found) == [
        "carbon.zones.eu-north-1",
        "accounting.marketFactors.NO",
        "classes.nordic.selector.matchLabels.tier",
        "classes.nordic.constraints.allowedZones[1]",
        "classes.nordic.constraints.allowedZones[2]",
    ]
    key = found["accounting.marketFactors.NO"]
    assert (key.line, key.column) == (6, 19)  # the key itself
    assert 'quote it as "NO"' in key.message and "false" in key.message
    assert 'quote it as "NO"' in found["carbon.zones.eu-north-1"].message
    assert 'quote it as "no"' in found["classes.nordic.constraints.allowedZones[1]"].message
    assert 'quote it as "Off"' in found["classes.nordic.constraints.allowedZones[2]"].message
    assert "empty" in found["classes.nordic.selector.matchLabels.tier"].message


def test_quoted_yaml_11_words_are_strings() -> None:
    quoted = (
        NORWAY.replace("eu-north-1: NO", 'eu-north-1: "NO"')
        .replace("{NO: 5", '{"NO": 5')
        .replace("tier: }", 'tier: "gold"}')
        .replace("[SE, no, Off]", "[SE, 'no', 'Off']")
    )
    policy, issues = validate_text(quoted, "p.yaml")
    assert issues == [] and policy is not None
    assert policy.accounting.market_factors == {"NO": 5.0, "SE": 10.0}
    assert policy.carbon.zones == {"eu-north-1": "NO"}


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        ("carbon:\n  static: {DE: 2500, FR: x}\n", "carbon.static.DE"),
        ("power:\n  pueByZone: {SE: 0.5, NO2: x}\n", "power.pueByZone.SE"),
        ("accounting:\n  residualMix: {DE: -1, FR: x}\n", "accounting.residualMix.DE"),
    ],
)
def test_a_bad_value_in_a_mapping_does_not_hide_the_next(snippet: str, path: str) -> None:
    policy, issues = validate_text("apiVersion: lowcarb.dev/v2\nkind: Policy\n" + snippet)
    assert policy is None
    assert len(issues) == 2
    assert issues[0].path == path and "out" in issues[0].message
    assert "must be a number" in issues[1].message
