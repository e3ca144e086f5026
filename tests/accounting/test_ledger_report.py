"""Reports: grouped exports agree across formats, SCI, the chart, CLI and GET /report options."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import GateRecord, Ledger, LedgerTarget
from carbon.accounting.report import (
    GROUP_KEYS,
    SUM_COLUMNS,
    ReportError,
    ReportOptions,
    build_report,
)
from carbon.accounting.report_query import report_http, report_http_async
from carbon.accounting.settings import AccountingPolicy
from scheduler.cli.errors import command_app
from scheduler.cli.report import report
from tests.support.ledger import ListHistory, hourly, placement, run
from tests.support.postgres import PgServer

DAY0 = datetime(2023, 6, 13, tzinfo=UTC)
WRITER = Path(__file__).with_name("burst_writer.py")
PODS = 90


def _fill(path: LedgerTarget) -> None:
    """90 pods over three days in DE/FR/GB, accounted through the real Accountant."""
    import asyncio

    async def fill() -> None:
        history = ListHistory(
            {
                "DE": hourly("DE", DAY0, [300 + 80 * ((h % 24) < 8) for h in range(96)]),
                "FR": hourly("FR", DAY0, [55.0 + (h % 5) for h in range(96)]),
                # GB history stops after day 2: later runs are filled and marked estimated
                "GB": hourly("GB", DAY0, [210.0] * 48),
            }
        )
        with Ledger(path) as ledger:
            for i in range(PODS):
                start = (DAY0 + timedelta(hours=0.8 * i)).timestamp()
                await ledger.append_async(placement(i, start - 30))
                for rec in run(f"uid-{i:06d}", start, start + 3600 * (1 + i % 5)):
                    await ledger.append_async(rec)
                if i % 10 == 0:
                    await ledger.append_async(
                        GateRecord(
                            uid=f"uid-{i:06d}", namespace="ml-research", name=f"pod-{i:06d}",
                            held_at=start - 7200, planned_release=start, actual_release=start,
                            intensity_now_g_per_kwh=320.0, intensity_release_g_per_kwh=250.0,
                        )
                    )  # fmt: skip
            policy = AccountingPolicy(market_factors={"DE": 35.0})
            assert await Accountant(ledger, history, policy=policy).account_pending() == PODS

    asyncio.run(fill())


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "ledger.sqlite"
    _fill(path)
    return path


@pytest.fixture(scope="module")
def pg_ledger(pg_server: PgServer) -> str:
    """The same ledger in a PostgreSQL database."""
    url = pg_server.database()
    _fill(url)
    return url


def _sql_totals(path: Path, where: str = "") -> dict[str, float]:
    conn = sqlite3.connect(path)
    row = conn.execute(f"SELECT {', '.join(f'SUM({c})' for c in SUM_COLUMNS)} FROM usage {where}")
    out = dict(zip(SUM_COLUMNS, row.fetchone(), strict=True))
    conn.close()
    return out


def _frame(path: LedgerTarget, fmt: str, group_by: tuple[str, ...]) -> pd.DataFrame:
    body = build_report(path, ReportOptions(group_by=group_by, format=fmt))
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(body), keep_default_na=False)
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body)).to_pandas()
    return pd.DataFrame(json.loads(body)["rows"])


@pytest.mark.parametrize("key", GROUP_KEYS)
def test_totals_agree_across_every_format(ledger_path: Path, key: str) -> None:
    expected = _sql_totals(ledger_path)
    for fmt in ("csv", "parquet", "json", "sci"):
        df = _frame(ledger_path, fmt, (key,))
        for col in SUM_COLUMNS:
            assert df[col].sum() == pytest.approx(expected[col], rel=1e-9), (fmt, col)
    # inventory and scheduling effect are separate: nothing mixes counterfactual into co2e
    assert expected["avoided_kg"] == pytest.approx(
        expected["counterfactual_kg"] - expected["co2e_location_kg"]
    )


def test_group_rows_match_the_ledger(ledger_path: Path) -> None:
    conn = sqlite3.connect(ledger_path)
    per_zone = dict(conn.execute("SELECT zone, SUM(energy_kwh) FROM usage GROUP BY zone"))
    days = [r[0] for r in conn.execute("SELECT DISTINCT day FROM usage ORDER BY day")]
    conn.close()
    df = _frame(ledger_path, "csv", ("zone",))
    assert dict(zip(df["zone"], df["energy_kwh"], strict=True)) == pytest.approx(per_zone)
    assert list(df.columns[:3]) == ["zone", "pods", "jobs"]
    assert df["pods"].sum() == PODS
    pods = _frame(ledger_path, "csv", ("pod",))
    assert len(pods) == PODS and pods["pod"].iloc[0] == "ml-research/pod-000000"
    both = _frame(ledger_path, "json", ("zone", "day"))
    assert sorted(set(both["day"])) == days
    assert len(both) == len(set(zip(both["zone"], both["day"], strict=True)))
    jobs = _frame(ledger_path, "csv", ("job",))
    assert "ml-research/Job/run-0" in set(jobs["job"])


def test_estimated_share_and_method_columns(ledger_path: Path) -> None:
    df = _frame(ledger_path, "csv", ("zone",)).set_index("zone")
    assert df.loc["FR", "estimated_share"] == 0.0
    gb = float(df["estimated_share"]["GB"])
    assert 0.0 < gb < 1.0  # runs past the end of GB's history
    assert set(df["method"]) == {"model"}
    market = df["co2e_market_kg"] / df["energy_kwh"] * 1000
    assert market["DE"] == pytest.approx(35.0)  # contractual factor
    assert df.loc["FR", "co2e_market_kg"] == pytest.approx(df.loc["FR", "co2e_location_kg"])


def test_period_filter_counts_runs_by_start(ledger_path: Path) -> None:
    lo, hi = DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)
    opts = ReportOptions(start=lo.timestamp(), end=hi.timestamp(), group_by=("day",), format="json")
    body = json.loads(build_report(ledger_path, opts))
    where = f"WHERE start >= {lo.timestamp()} AND start < {hi.timestamp()}"
    expected = _sql_totals(ledger_path, where)
    assert [r["day"] for r in body["rows"]] == ["2023-06-14"]
    assert body["totals"]["energy_kwh"] == pytest.approx(expected["energy_kwh"])
    assert body["from"] == "2023-06-14T00:00:00+00:00"


def test_sci_per_job_follows_the_specification(ledger_path: Path) -> None:
    doc = json.loads(build_report(ledger_path, ReportOptions(group_by=("job",), format="sci")))
    assert "ISO/IEC 21031:2024" in doc["specification"]
    assert doc["functional_unit"] == "job"
    for row in doc["rows"]:
        e, i, m, r = row["E_kwh"], row["I_g_per_kwh"], row["M_g"], row["R"]
        assert r == 1.0
        assert e * i == pytest.approx(row["co2e_location_kg"] * 1000)
        assert m == pytest.approx(row["embodied_kg"] * 1000)
        assert row["SCI_g_per_unit"] == pytest.approx((e * i + m) / r)
    gpu_h = json.loads(
        build_report(
            ledger_path, ReportOptions(group_by=("namespace",), format="sci", sci_unit="gpu-hour")
        )
    )
    for row in gpu_h["rows"]:
        assert row["R"] == pytest.approx(row["gpu_hours"])
        assert row["SCI_g_per_unit"] == pytest.approx(
            (row["co2e_location_kg"] + row["embodied_kg"]) * 1000 / row["gpu_hours"]
        )


def test_parquet_carries_report_metadata(ledger_path: Path) -> None:
    body = build_report(ledger_path, ReportOptions(group_by=("class",), format="parquet"))
    table = pq.read_table(io.BytesIO(body))
    meta = json.loads(table.schema.metadata[b"lowcarb.report"])
    assert meta["group_by"] == ["class"] and "counterfactual" in meta
    assert set(table.column("class").to_pylist()) == {"training", "batch", "inference"}


def test_plot_is_a_png_of_days_by_zone(ledger_path: Path) -> None:
    import matplotlib.image as mpimg

    body = build_report(ledger_path, ReportOptions(format="png"))
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(body), format="png")
    assert img.shape[0] > 300 and img.shape[1] > 600
    empty = build_report(ledger_path, ReportOptions(start=0.0, end=1.0, format="png"))
    assert empty[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": ("zones",)}, "--group-by: unknown key 'zones'"),
        ({"group_by": ()}, "--group-by: give at least one"),
        ({"group_by": ("zone", "zone")}, "listed twice"),
        ({"format": "xlsx"}, "--format: unknown format 'xlsx'"),
        ({"sci_unit": "token"}, "--sci-unit: unknown unit 'token'"),
        ({"start": 10.0, "end": 5.0}, "--to must be later than --from"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)):
        ReportOptions(**kwargs)  # type: ignore[arg-type]


def _cli() -> typer.Typer:
    return command_app(report)  # lowcarb's error handling, as under the lowcarb command


def test_cli_writes_report_and_plot(ledger_path: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "by-ns.csv", tmp_path / "daily.png"
    result = CliRunner().invoke(
        _cli(),
        ["--ledger", str(ledger_path), "--from", "2023-06-13", "--to", "2023-06-16T00:00:00Z",
         "--group-by", "namespace", "--format", "csv", "--out", str(out), "--plot", str(png)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert df["energy_kwh"].sum() == pytest.approx(_sql_totals(ledger_path)["energy_kwh"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_errors_name_path_and_option(ledger_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    result = CliRunner().invoke(_cli(), ["--ledger", str(missing)])
    assert result.exit_code == 2  # a file that is not there is a usage mistake
    assert str(missing) in result.output and "no such file" in result.output
    result = CliRunner().invoke(_cli(), ["--ledger", str(ledger_path), "--from", "last tuesday"])
    assert result.exit_code == 2
    assert "--from: 'last tuesday' is not a date" in result.output


def test_cli_dash_is_stdout(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'--out -' writes the report to standard output (no file named '-'); so does '--plot -'."""
    monkeypatch.chdir(tmp_path)
    to_file = tmp_path / "report.csv"
    args = ["--ledger", str(ledger_path), "--format", "csv", "--group-by", "zone"]
    result = CliRunner().invoke(_cli(), [*args, "--out", str(to_file)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(_cli(), [*args, "--out", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == to_file.read_bytes()
    assert pd.read_csv(io.BytesIO(result.stdout_bytes))["zone"].tolist() == ["DE", "FR", "GB"]
    result = CliRunner().invoke(_cli(), [*args, "--out", str(to_file), "--plot", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes[:4] == b"\x89PNG"
    assert not (tmp_path / "-").exists()


def test_lowcarb_report_entry_point(ledger_path: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("lowcarb")
    if not exe.exists():
        pytest.skip("lowcarb console script not installed in this environment")
    out = tmp_path / "sci.json"
    proc = subprocess.run(
        [str(exe), "report", "--ledger", str(ledger_path), "--format", "sci", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["group_by"] == ["job"]
    assert sum(r["E_kwh"] for r in doc["rows"]) == pytest.approx(
        _sql_totals(ledger_path)["energy_kwh"]
    )


def test_http_report_function(ledger_path: Path) -> None:
    ctype, body = report_http(ledger_path, {"group-by": "zone", "format": "csv"})
    assert ctype.startswith("text/csv")
    assert body == build_report(ledger_path, ReportOptions(group_by=("zone",), format="csv"))
    ctype, body = report_http(ledger_path, {"group_by": "job", "format": "sci"})
    assert ctype == "application/json" and json.loads(body)["functional_unit"] == "job"
    ctype, body = report_http(ledger_path, {"format": "png", "from": "2023-06-13"})
    assert ctype == "image/png" and body[:4] == b"\x89PNG"
    with pytest.raises(ReportError, match="unknown query parameter 'groupby'; did you mean"):
        report_http(ledger_path, {"groupby": "zone"})


def test_reports_read_while_a_server_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), "usage"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(200):  # wait until the writer has acknowledged a first burst
            assert proc.stdout.readline()
        seen = []
        for _ in range(8):
            df = _frame(path, "csv", ("namespace",))
            pods = int(df["pods"].sum())
            # every snapshot is whole: totals are exactly pods x the per-row constants
            assert df["energy_kwh"].sum() == pytest.approx(0.1 * pods)
            assert df["avoided_kg"].sum() == pytest.approx(0.001 * pods)
            seen.append(pods)
            for _ in range(64):  # let the writer make progress between reports
                proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert seen == sorted(seen) and seen[-1] > seen[0] > 0


async def test_http_report_async_runs_off_the_event_loop(ledger_path: Path) -> None:
    import asyncio

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    ctype, body = await report_http_async(ledger_path, {"group-by": "day", "format": "png"})
    task.cancel()
    assert ctype == "image/png" and body[:4] == b"\x89PNG"
    assert ticks > 1  # the loop kept running while the chart was drawn in a worker thread


@pytest.mark.parametrize("key", GROUP_KEYS)
def test_both_backends_report_the_same_figures(ledger_path: Path, pg_ledger: str, key: str) -> None:
    """The same records in SQLite and PostgreSQL give the same groups, in the same order, with
    the same sums, in every format (floats summed in another order: equal to 1e-9)."""
    for fmt in ("csv", "json", "sci"):
        lite, pg = _frame(ledger_path, fmt, (key,)), _frame(pg_ledger, fmt, (key,))
        assert list(lite.columns) == list(pg.columns)
        assert len(lite) == len(pg) > 0
        for col in lite.columns:
            if pd.api.types.is_float_dtype(lite[col]):
                assert pg[col].tolist() == pytest.approx(lite[col].tolist(), rel=1e-9), (fmt, col)
            else:
                assert pg[col].tolist() == lite[col].tolist(), (fmt, col)
    both = [json.loads(build_report(t, ReportOptions(format="json")))["totals"]
            for t in (ledger_path, pg_ledger)]  # fmt: skip
    assert both[1] == pytest.approx(both[0], rel=1e-9)
    assert both[0]["energy_kwh"] == pytest.approx(_sql_totals(ledger_path)["energy_kwh"])
    png = build_report(pg_ledger, ReportOptions(format="png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_names_a_postgres_ledger_without_its_password(pg_ledger: str) -> None:
    url = pg_ledger.replace("lowcarb@", "lowcarb:not-checked@")  # trust auth ignores it
    doc = json.loads(build_report(url, ReportOptions(format="json")))
    assert doc["ledger"] == pg_ledger.replace("lowcarb@", "lowcarb:***@")
    result = CliRunner().invoke(_cli(), ["--ledger", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"] == pytest.approx(doc["totals"])
