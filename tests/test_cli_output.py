"""``--output table|json|csv`` and ``--wide`` of the data commands that run offline (carbon show on
the embedded policy's static values, explain on recorded manifests): the table fits 80 columns,
``--wide`` has every column, CSV and JSON carry the same values, ``--json`` is ``--output json``."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbon import clock
from carbon.clock import parse_instant
from scheduler.cli.main import app
from tests.support.policy import FIXTURES

SHOW = ["carbon", "show", "--zones", "SE-SE3,DE,ATLANTIS", "--forecast", "24h"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"}, terminal_width=80)
    # stdout only: stderr may carry log lines of handlers other tests installed
    assert "Traceback" not in result.stdout
    return result.exit_code, result.stdout


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_carbon_show_table_fits_80_and_wide_adds_the_kind_column() -> None:
    code, narrow = run(*SHOW)
    assert code == 1  # ATLANTIS has no value
    assert widest(narrow) <= 80, narrow
    assert "fc mean" in narrow and "kind" not in narrow and "SE-SE3" in narrow
    code, wide = run(*SHOW, "--wide")
    for head in ("zone", "now", "source", "age", "kind", "stale", "fc mean", "fc min", "min in"):
        assert head in wide, head


def test_carbon_show_csv_and_json_agree_and_json_flag_is_an_alias() -> None:
    _, text = run(*SHOW, "--output", "csv")
    rows = {r["zone"]: r for r in csv.DictReader(io.StringIO(text))}
    assert list(rows) == ["SE-SE3", "DE", "ATLANTIS"]
    assert rows["ATLANTIS"]["reason"] == "unknown_zone" and rows["ATLANTIS"]["g_per_kwh"] == ""
    _, as_output = run(*SHOW, "-o", "json")
    _, as_flag = run(*SHOW, "--json")
    assert json.loads(as_output) == json.loads(as_flag)
    zones = json.loads(as_output)["zones"]
    assert float(rows["DE"]["g_per_kwh"]) == zones["DE"]["g_per_kwh"]
    assert float(rows["DE"]["fc_mean_g_per_kwh"]) == zones["DE"]["forecast"]["mean_g_per_kwh"]


def test_json_flag_contradicting_output_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, [*SHOW, "--json", "--output", "csv"])
    assert result.exit_code == 2
    assert result.stderr.startswith("lowcarb: error: --json: contradicts --output csv;")


def test_explain_table_fits_80_and_csv_has_one_row_per_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # four runs compared with each other, so the clock stands still (each run dates its
    # forecast window to the second: two runs a second apart would differ there)
    monkeypatch.setattr(time, "time", lambda: parse_instant("2026-11-28T12:15:00Z"))
    clock.reset()
    pod, nodes = str(FIXTURES / "pods-get.json"), str(FIXTURES / "nodes-list.json")
    args = ["explain", "--pod", pod, "--nodes", nodes, "--offline"]
    code, table = run(*args)
    assert code == 0 and widest(table) <= 80, table
    code, text = run(*args, "--output", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    result = json.loads(run(*args, "--json")[1])
    assert json.loads(run(*args, "-o", "json")[1]) == result
    assert [r["node"] for r in rows] == [n["node"] for n in result["nodes"]]
    first = result["nodes"][0]
    assert rows[0]["score"] == str(first["score"]) and rows[0]["feasible"] == "True"
    infeasible = [r for r in rows if r["feasible"] == "False"]
    assert infeasible and all("GPUs" in r["reason"] for r in infeasible)


def test_policy_validate_output_is_its_format_option() -> None:
    policy = str(Path(__file__).parents[1] / "policies" / "default.yaml")
    code, by_output = run("policy", "validate", "--output", "json", policy)
    assert code == 0, by_output
    assert json.loads(by_output) == json.loads(
        run("policy", "validate", "--format", "json", policy)[1]
    )
    assert json.loads(by_output)["valid"] is True
