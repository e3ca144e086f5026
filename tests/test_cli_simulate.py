"""``lowcarb simulate`` on the real trace and series: the table fits 80 columns, ``--wide`` has
every column, ``--output csv|json`` carry the data alone (skipped without the data directory)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from carbon.datadir import data_dir
from scheduler.cli.main import app
from scheduler.sim.report import COLUMNS, SHIFT_COLUMNS

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "gpu-trace").is_dir(),  # type: ignore[operator]
    reason="shared datasets not found (set LOWCARB_DATA to the folder holding gpu-trace/, carbon/)",
)
RUN = [
    "simulate",
    "--pods",
    "200",
    "--zones",
    "NO,GB",
    "--policies",
    "lowcarb,lowcarb-shift",
    "--slack",
    "4",
]


def simulate(*extra: str) -> str:
    result = CliRunner().invoke(app, [*RUN, *extra], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("{")]


@needs_data
def test_simulate_table_fits_80_and_wide_has_every_column() -> None:
    narrow = simulate()
    lines = table_lines(narrow)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    for policy in ("k8s-default", "lowcarb-shift", "bound (LP)"):  # never cut to 'lowcarb-s…'
        assert any(policy in line for line in lines), policy
    assert json.loads(narrow.splitlines()[-1])["benchmark"] == "placement"  # the JSON line last
    wide = "\n".join(table_lines(simulate("--wide")))
    for head, _, _ in COLUMNS + SHIFT_COLUMNS:
        assert head in wide, head
    assert "GPU-h" not in "\n".join(lines)  # the narrow table really has fewer columns


@needs_data
def test_simulate_output_csv_and_json_are_the_data_alone() -> None:
    rows = list(csv.DictReader(io.StringIO(simulate("--output", "csv"))))
    assert [r["policy"] for r in rows] == ["k8s-default", "lowcarb", "lowcarb-shift", "bound (LP)"]
    assert {key for _, key, _ in COLUMNS + SHIFT_COLUMNS} <= set(rows[0])
    assert float(rows[1]["tco2e"]) > 0
    out = simulate("-o", "json")
    summary = json.loads(out)  # one JSON document, nothing else
    assert set(summary["policies"]) >= {"k8s-default", "lowcarb"}
    assert float(rows[1]["tco2e"]) == pytest.approx(
        summary["policies"]["lowcarb"]["tco2e"], abs=1e-3
    )


@needs_data
def test_a_zone_without_the_year_names_the_zones_that_have_it() -> None:
    result = CliRunner().invoke(app, ["simulate", "--zones", "NO,FR", "--year", "2023"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.count("\n") == 0 and "Traceback" not in line
    assert "--zones" in line and "'FR'" in line
    listed = line.split("zones with a 2023 series: ")[1].split(";")[0].split(",")
    assert "NO" in listed and "FR" not in listed
    result = CliRunner().invoke(app, ["simulate", "--year", "1999"])
    assert result.exit_code == 2 and "zones with a 1999 series: none" in result.output
