"""``policy validate`` warnings about carbon coverage (issue 12, item 5): a ``carbon.zones`` target
that no configured source knows, and a ``signal: marginal`` class without a marginal source."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli.main import app as lowcarb
from scheduler.policy.validate import lint_text

MARGINAL = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
{carbon}
classes:
  spot:
    selector: {{namespaces: [spot]}}
    signal: marginal
"""

WARNED = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  zones: {eu-central: DE-LU, lab: eu-west-3, dc-us: US, dc-x: DE-L}
classes:
  spot:
    selector: {namespaces: [spot]}
    signal: marginal
"""


def test_validate_warns_about_unknown_zone_targets_and_marginal_without_source() -> None:
    issues = [str(i) for i in lint_text(WARNED, "p.yaml")]
    assert issues == [
        "p.yaml:4:53: carbon.zones.dc-us: zone 'US' is known to no configured carbon source (no "
        "static row, not in a provider's zone table): nodes in region 'dc-us' would be scored "
        "neutral (unknown_zone); set carbon.static: {US: <gCO2e/kWh>} or map the region to a "
        "known zone key such as 'DE' or 'SE-SE3'",
        "p.yaml:4:63: carbon.zones.dc-x: zone 'DE-L' is known to no configured carbon source (no "
        "static row, not in a provider's zone table): nodes in region 'dc-x' would be scored "
        "neutral (unknown_zone); did you mean 'DE-LU'? set carbon.static: {DE-L: <gCO2e/kWh>} "
        "or map the region to a known zone key such as 'DE' or 'SE-SE3'",
        "p.yaml:8:13: classes.spot.signal: class 'spot' asks for the marginal signal but no "
        "source of carbon.fallback (static) has signal: marginal, so it would be scored on "
        "average intensity; add a marginal provider (e.g. watttime with signal: marginal) to "
        "carbon.providers and carbon.fallback",
    ]


def test_a_zone_key_in_the_wrong_case_gets_the_hint_too() -> None:
    """The same 'did you mean' as every other policy message (carbon.checks.did_you_mean): zone
    keys are case-sensitive, and a lower-case key is no close match by spelling alone."""
    text = MARGINAL.format(carbon="  zones: {dc-se: se-se3}").replace("signal: marginal", "")
    (issue,) = [str(i) for i in lint_text(text, "p.yaml")]
    assert issue.startswith("p.yaml:4:18: carbon.zones.dc-se: zone 'se-se3' is known to no")
    assert "(unknown_zone); did you mean 'SE-SE3'? set carbon.static: {se-se3: " in issue


@pytest.mark.parametrize(
    "carbon",
    [
        # a provider's own zone table (ukgrid regional key), a policy static row, and a
        # marginal source in the chain
        "  providers:\n    - {name: ukgrid, zones: {GB-LON: 'regionid:13'}}\n"
        "    - {name: watttime, signal: marginal}\n"
        "  fallback: [watttime, ukgrid, static]\n"
        "  static: {US: 380}\n"
        "  zones: {london: GB-LON, dc-us: US}",
    ],
)
def test_no_warning_when_some_source_knows_the_zone(carbon: str) -> None:
    text = MARGINAL.format(carbon=carbon)
    assert lint_text(text, "p.yaml") == []


def test_warning_without_the_builtin_table_mentions_live_only_providers() -> None:
    carbon = (
        "  providers: [{name: electricitymaps}]\n  fallback: [electricitymaps, static]\n"
        "  builtinStatic: false\n  zones: {dc1: DE}"
    )
    text = MARGINAL.format(carbon=carbon).replace("    signal: marginal\n", "")
    (issue,) = lint_text(text, "p.yaml")
    assert issue.path == "carbon.zones.dc1"
    assert "electricitymaps may still answer for it live, but nothing would when they fail" in (
        issue.message
    )


def test_cli_validate_prints_the_warnings_and_strict_fails(tmp_path: Path) -> None:
    path = tmp_path / "warned.yaml"
    path.write_text(WARNED)
    runner = CliRunner()
    result = runner.invoke(lowcarb, ["policy", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(": warning: ") == 3
    assert "classes.spot.signal: class 'spot' asks for the marginal signal" in result.stderr
    result = runner.invoke(lowcarb, ["policy", "validate", "--strict", str(path)])
    assert result.exit_code == 1
