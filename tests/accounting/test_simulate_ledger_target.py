"""``lowcarb simulate --ledger`` takes what ``serve --ledger`` takes: a SQLite file or a
postgresql:// URL (one parser, carbon.accounting.target); a simulated run written to either backend
reports the same totals, and a bad value is a one-line error naming --ledger before any run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbon.datadir import data_dir
from scheduler.cli.main import app
from tests.support.fakeapi import free_port

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "gpu-trace").is_dir(),  # type: ignore[operator]
    reason="shared datasets not found (set LOWCARB_DATA to the folder holding gpu-trace/, carbon/)",
)
RUN = ["simulate", "--pods", "120", "--zones", "NO,GB", "--policies", "lowcarb", "--output", "json"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "100"}, terminal_width=100)
    return result.exit_code, result.output


def totals(ledger: str) -> dict[str, float]:
    code, out = invoke("report", "--ledger", ledger, "--output", "json")
    assert code == 0, out
    return dict(json.loads(out)["totals"])


@needs_data
def test_simulate_records_into_postgresql_as_into_sqlite(pg_url: str, tmp_path: Path) -> None:
    sqlite = str(tmp_path / "sim.sqlite")
    for target in (pg_url, sqlite):
        code, out = invoke(*RUN, "--ledger", target)
        assert code == 0, out
        said = " ".join(out.split())
        assert f"ledger {target}: " in said and "usage rows (lowcarb)" in said, said
    in_pg, in_file = totals(pg_url), totals(sqlite)
    assert in_pg["co2e_location_kg"] > 0 and in_pg["avoided_kg"] > 0
    assert in_pg == pytest.approx(in_file, rel=1e-9)


def test_simulate_ledger_of_another_database_names_the_option() -> None:
    code, out = invoke(*RUN, "--ledger", "mysql://user@127.0.0.1/ledger")
    assert code == 2, out
    assert "--ledger" in out and "mysql" in out and "postgresql://" in out
    assert "Traceback" not in out


@needs_data
def test_simulate_says_an_unreachable_server_before_the_run() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/ledger"  # nothing listens there
    code, out = invoke(*RUN, "--ledger", url)
    assert code == 2, out
    assert "--ledger" in out and "cannot connect" in out
    assert "usage rows" not in out and "Traceback" not in out
