"""``lowcarb policy migrate``: a v1 (class-weights) file rewritten as v2, comments kept, validated;
and every way of loading a v1 file refuses it with the one message naming the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

from typer.testing import CliRunner

from scheduler.cli.main import app as lowcarb
from scheduler.policy.validate import validate_text
from tests.support.fakeapi import free_port, lowcarb_command

V1 = """\
# our policy: keep this comment
apiVersion: lowcarb.dev/v1   # the version
kind: Policy
classes:
  training:
    selector:
      ownerKinds: [PyTorchJob]   # training jobs
    weights: {gpu_fit: 0.4, carbon: 0.6}   # tuned in 2024
    carbonNormalization: ratio
    expectedDuration: 8h
  packing-only:
    selector: {namespaces: [pack]}
    weights:
      gpu_fit: 1.0
      least_allocated: 0.5
    gpuMode: bestfit
  default:
    weights: {gpu_fit: 0.2, carbon: 0.8}
"""
V2 = """\
# our policy: keep this comment
apiVersion: lowcarb.dev/v2   # the version
kind: Policy
classes:
  training:
    selector:
      ownerKinds: [PyTorchJob]   # training jobs
    expectedDuration: 8h
  packing-only:
    selector: {namespaces: [pack]}
    prices: {carbonPerTonne: 0}   # was weights: {gpu_fit: 1.0, least_allocated: 0.5}
    gpuMode: bestfit
  default: {}
"""


def test_validate_refuses_v1_with_one_message_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    result = CliRunner().invoke(lowcarb, ["policy", "validate", str(path)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if ": apiVersion: " in line]
    assert errors == [
        f"{path}:2:13: apiVersion: lowcarb.dev/v1 is the class-weights model, removed in v2; "
        f"run 'lowcarb policy migrate {path}' (writes the v2 file) or set apiVersion: "
        "lowcarb.dev/v2 and delete each class's weights and carbonNormalization "
        "(lines 8, 9, 13, 18)"
    ]
    assert f"{path}: invalid (1 error)" in result.stderr


def test_migrate_rewrites_in_place_keeping_comments(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    result = CliRunner().invoke(lowcarb, ["policy", "migrate", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text() == V2
    policy, issues = validate_text(path.read_text())
    assert issues == [] and policy is not None
    assert policy.class_prices("packing-only").carbonPerTonne == 0.0  # was carbon-blind
    assert policy.class_prices("training").carbonPerTonne == 190.0
    assert "least_allocated is not priced in v2" in result.stderr
    assert f"{path}: written (lowcarb.dev/v2, valid)" in result.stderr
    again = CliRunner().invoke(lowcarb, ["policy", "migrate", str(path)])
    assert again.exit_code == 0 and "already lowcarb.dev/v2; nothing to change" in again.stderr
    assert path.read_text() == V2


def test_migrate_to_stdout_or_another_file_leaves_the_input(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    result = CliRunner().invoke(lowcarb, ["policy", "migrate", str(path), "--out", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout == V2 and path.read_text() == V1
    out = tmp_path / "v2.yaml"
    result = CliRunner().invoke(lowcarb, ["policy", "migrate", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == V2 and path.read_text() == V1


def test_what_the_rewrite_cannot_do_is_a_one_line_usage_error(tmp_path: Path) -> None:
    inline = tmp_path / "inline.yaml"
    inline.write_text(
        "apiVersion: lowcarb.dev/v1\nkind: Policy\n"
        "classes: {default: {weights: {carbon: 1}, gpuMode: fgd}}\n"
    )
    result = CliRunner().invoke(lowcarb, ["policy", "migrate", str(inline)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"lowcarb: error: FILE: {inline}:3: class 'default' writes weights")
    assert "put it on its own line" in line
    still_bad = tmp_path / "bad.yaml"
    still_bad.write_text(V1.replace("expectedDuration: 8h", "expectedDuration: soon"))
    result = CliRunner().invoke(lowcarb, ["policy", "migrate", str(still_bad)])
    assert result.exit_code == 2
    assert "the migrated policy is still invalid (1 errors)" in result.stderr
    assert "classes.training.expectedDuration" in result.stderr
    assert still_bad.read_text().startswith("# our policy")  # nothing written
    assert "lowcarb.dev/v1" in still_bad.read_text()


def test_serve_refuses_a_v1_policy_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    serve = ["serve", "--host", "127.0.0.1", "--port", str(free_port()), "--policy", str(path)]
    out = subprocess.run(
        [*lowcarb_command(), *serve],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{path}:2:13: apiVersion: lowcarb.dev/v1 is the class-weights model" in out.stderr
    assert f"lowcarb policy migrate {path}" in out.stderr
