"""Reports that fill in minutes: the policy's settleAfter, pods awaiting accounting (how many, when
they settle) in reports, the CLI and GET /report, and --include-provisional estimates.

Ledgers are dated from a fixed instant for in-process tests; the real-server test dates them from
the wall clock the server reads (so it passes with the clock moved, e.g. under faketime).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger, LedgerTarget, UsageRecord, open_reader, read_records
from carbon.accounting.report import ReportOptions, build
from carbon.accounting.settings import AccountingPolicy
from carbon.clock import wall
from carbon.energy import PowerModel
from scheduler.cli.errors import command_app
from scheduler.cli.report import report
from scheduler.policy.validate import policy_from_text
from tests.support.deploy import running_lowcarb
from tests.support.ledger import ListHistory, hourly, placement, run

NOW = datetime(2023, 6, 14, 12, 0, tzinfo=UTC).timestamp()
H = 3600.0
MIN = 60.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fill(target: LedgerTarget, now: float) -> None:
    """Pod 0 (DE, 1 A100) ran 2 h and ended 2 min ago; pod 1 (FR) ended 1 min ago; pod 2 (GB) ran
    1 h, ended 3 h ago and is accounted; pod 5 is still running."""
    history = ListHistory(
        {"DE": hourly("DE", datetime.fromtimestamp(now - 6 * H, UTC), [300.0] * 8)}
    )
    with Ledger(target) as ledger:
        ledger.append_many(
            [
                placement(0, now - 2 * H - 2 * MIN - 30),
                *run("uid-000000", now - 2 * H - 2 * MIN, now - 2 * MIN),
                placement(1, now - H - 30), *run("uid-000001", now - H, now - MIN),
                placement(2, now - 4 * H - 30), *run("uid-000002", now - 4 * H, now - 3 * H),
                placement(5, now - 30), run("uid-000005", now, now + H)[0],
            ]
        )  # fmt: skip
        accountant = Accountant(ledger, history, clock=lambda: now)
        assert asyncio.run(accountant.account_pending(settle_s=H)) == 1  # pod 2 only


# pod 0 by hand, from the default power model: A100 320 W + 4 cores x 4 W + 16 GiB x 0.375 W,
# PUE 1.2, 2 h at the decision-time intensity of 350 gCO2e/kWh
POD0_KWH = (320 + 4 * 4.0 + 16 * 0.375) * 1.2 * 2 * H / 3.6e6
POD0_KG = POD0_KWH * 350 / 1000


def test_settle_after_is_a_policy_duration() -> None:
    assert AccountingPolicy().settle_after == 300.0  # default 5m
    policy = policy_from_text(
        "apiVersion: lowcarb.dev/v2\nkind: Policy\naccounting:\n  settleAfter: 90s\n"
    )
    assert policy.accounting.settle_after == 90.0
    dumped = policy.accounting.model_dump(mode="json", by_alias=True)
    assert dumped["settleAfter"] == "1m30s"  # written back in the duration grammar


async def test_accountant_run_waits_the_policys_settle_after(target: LedgerTarget) -> None:
    await asyncio.to_thread(_fill, target, NOW)
    clock = [NOW]
    policy = AccountingPolicy(settleAfter="90s")  # type: ignore[call-arg]
    with Ledger(target) as ledger:
        history = ListHistory(
            {"DE": hourly("DE", datetime.fromtimestamp(NOW - 6 * H, UTC), [300.0] * 8)}
        )
        accountant = Accountant(ledger, history, policy=policy, clock=lambda: clock[0])

        def accounted() -> set[str]:
            reader = open_reader(target)
            try:
                return {u.uid for u in read_records(reader, UsageRecord)}
            finally:
                reader.close()

        async def until(uids: set[str]) -> None:
            for _ in range(400):
                if await asyncio.to_thread(accounted) == uids:
                    return
                await asyncio.sleep(0.025)
            raise AssertionError(f"accounted {await asyncio.to_thread(accounted)}, want {uids}")

        task = asyncio.create_task(accountant.run(interval_s=0.02))
        try:
            # pod 0 ended 2 min ago (> 90 s): settled; pod 1 ended 1 min ago: not yet
            await until({"uid-000000", "uid-000002"})
            await asyncio.sleep(0.1)  # more passes: still not pod 1
            assert await asyncio.to_thread(accounted) == {"uid-000000", "uid-000002"}
            clock[0] = NOW + 31  # pod 1 ended 91 s ago
            await until({"uid-000000", "uid-000001", "uid-000002"})
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def test_report_counts_pods_awaiting_accounting(target: LedgerTarget) -> None:
    _fill(target, NOW)
    result = build(target, ReportOptions(format="json", settle_after_s=300.0), now=NOW)
    doc = json.loads(result.body)
    assert result.backlog.pods == 2
    assert doc["awaiting_accounting"] == {
        "pods": 2,
        "settle_after": "5m",
        "first_settles_at": _iso(NOW - 2 * MIN + 300),
        "last_settles_at": _iso(NOW - MIN + 300),
        "included_as_provisional": False,
    }
    assert result.backlog.headers() == {
        "X-Lowcarb-Awaiting-Accounting": "2",
        "X-Lowcarb-Settle-After": "5m",
        "X-Lowcarb-First-Settles-At": _iso(NOW + 3 * MIN),
        "X-Lowcarb-Last-Settles-At": _iso(NOW + 4 * MIN),
    }
    assert result.backlog.line(NOW, included=False) == (
        "lowcarb: 2 finished pods await accounting (settleAfter 5m): the first settles at "
        f"{_iso(NOW + 3 * MIN)}, the last at {_iso(NOW + 4 * MIN)}; --include-provisional adds "
        "them as estimates"
    )
    # runs count in the period they started in: pod 1 started 1 h ago, pod 0 before
    later = build(target, ReportOptions(start=NOW - H - 1, settle_after_s=300.0), now=NOW)
    assert later.backlog.pods == 1
    # the accounted pod alone makes the rows
    assert [r["pods"] for r in doc["rows"]] == [1] and doc["rows"][0]["namespace"] == "serving"
    overdue = result.backlog.line(NOW + 2 * H, included=True)
    assert overdue is not None and "overdue since" in overdue and "included below" in overdue


def test_include_provisional_adds_estimated_rows_that_accounting_replaces(
    target: LedgerTarget,
) -> None:
    _fill(target, NOW)
    opts = ReportOptions(group_by=("pod",), format="json", include_provisional=True)
    doc = json.loads(build(target, opts, now=NOW).body)
    rows = {r["uid"]: r for r in doc["rows"]}
    assert set(rows) == {"uid-000000", "uid-000001", "uid-000002"}
    assert [rows[u]["provisional"] for u in sorted(rows)] == [True, True, False]
    pod0 = rows["uid-000000"]
    assert pod0["energy_kwh"] == pytest.approx(POD0_KWH)
    assert pod0["co2e_location_kg"] == pytest.approx(POD0_KG)
    assert pod0["estimated_share"] == 1.0  # all of it rests on the decision-time intensity
    assert doc["awaiting_accounting"]["included_as_provisional"] is True
    assert "provisional" in doc
    # totals stay the accounted figures; the estimates are summed apart
    plain = json.loads(build(target, ReportOptions(group_by=("pod",), format="json"), now=NOW).body)
    assert doc["totals"] == pytest.approx(plain["totals"])
    assert doc["totals"]["energy_kwh"] == pytest.approx(rows["uid-000002"]["energy_kwh"])
    assert doc["provisional_totals"]["energy_kwh"] == pytest.approx(
        rows["uid-000000"]["energy_kwh"] + rows["uid-000001"]["energy_kwh"]
    )
    # grouped: an accounted and a provisional row per group, never summed together
    by_zone = json.loads(
        build(
            target, ReportOptions(group_by=("zone",), format="json", include_provisional=True)
        ).body
    )
    assert [(r["zone"], r["provisional"], r["pods"]) for r in by_zone["rows"]] == [
        ("DE", True, 1),
        ("FR", True, 1),
        ("GB", False, 1),
    ]
    sci = json.loads(
        build(target, ReportOptions(format="sci", group_by=("job",), include_provisional=True)).body
    )
    assert {r["provisional"] for r in sci["rows"]} == {True, False}

    # once accounted, the final row replaces the estimate: same model energy, measured intensity
    with Ledger(target) as ledger:
        history = ListHistory(
            {"DE": hourly("DE", datetime.fromtimestamp(NOW - 6 * H, UTC), [300.0] * 8)}
        )
        assert (
            asyncio.run(Accountant(ledger, history, clock=lambda: NOW + H).account_pending()) == 2
        )
    after = build(target, opts, now=NOW + H)
    final = {r["uid"]: r for r in json.loads(after.body)["rows"]}
    assert after.backlog.pods == 0 and not any(r["provisional"] for r in final.values())
    assert final["uid-000000"]["energy_kwh"] == pytest.approx(POD0_KWH)
    assert final["uid-000000"]["co2e_location_kg"] == pytest.approx(POD0_KWH * 300 / 1000)
    assert after.backlog.line(NOW + H, included=True) is None


def test_cli_prints_the_backlog_on_stderr_and_provisional_rows(
    target: LedgerTarget, tmp_path: Path, pin_clock: Callable[[datetime], None]
) -> None:
    _fill(target, NOW)
    pin_clock(datetime.fromtimestamp(NOW, UTC))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: lowcarb.dev/v2\nkind: Policy\naccounting:\n  settleAfter: 10m\n")
    cli = command_app(report)
    result = CliRunner().invoke(
        cli, ["--ledger", str(target), "--policy", str(policy), "--group-by", "zone"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "lowcarb: 2 finished pods await accounting (settleAfter 10m): the first settles at "
        f"{_iso(NOW + 8 * MIN)}, the last at {_iso(NOW + 9 * MIN)}; --include-provisional adds "
        "them as estimates"
    )
    plain = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    assert list(plain["zone"]) == ["GB"] and "provisional" not in plain
    result = CliRunner().invoke(
        cli,
        [
            "--ledger",
            str(target),
            "--policy",
            str(policy),
            "--group-by",
            "zone",
            "--include-provisional",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "included below as provisional estimates" in result.stderr
    df = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    assert list(zip(df["zone"], df["provisional"], strict=True)) == [
        ("DE", True),
        ("FR", True),
        ("GB", False),
    ]
    assert df.loc[0, "energy_kwh"] == pytest.approx(POD0_KWH)


def test_http_report_says_what_awaits_accounting(target: LedgerTarget, tmp_path: Path) -> None:
    """The real server: GET /report's headers and JSON field, include-provisional=true."""
    now = wall()
    _fill(target, now)
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: lowcarb.dev/v2\nkind: Policy\naccounting:\n  settleAfter: 1h\n")
    args = ["--ledger", str(target), "--policy", str(policy), "--log-level", "warning"]
    with running_lowcarb(args, tmp_path / "serve.log") as port:
        base = f"http://127.0.0.1:{port}"
        plain = httpx.get(f"{base}/report", params={"format": "csv"}, timeout=60)
        assert plain.status_code == 200, plain.text
        assert plain.headers["X-Lowcarb-Awaiting-Accounting"] == "2"
        assert plain.headers["X-Lowcarb-Settle-After"] == "1h"
        assert plain.headers["X-Lowcarb-First-Settles-At"] == _iso(now - 2 * MIN + H)
        assert "provisional" not in plain.text.splitlines()[0]
        resp = httpx.get(
            f"{base}/report",
            params={"group-by": "pod", "include-provisional": "true"},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["awaiting_accounting"]["pods"] == 2
        flagged = {r["uid"]: r["provisional"] for r in doc["rows"]}
        assert flagged == {"uid-000000": True, "uid-000001": True, "uid-000002": False}
        pod0 = next(r for r in doc["rows"] if r["uid"] == "uid-000000")
        assert pod0["energy_kwh"] == pytest.approx(POD0_KWH)
        bad = httpx.get(f"{base}/report", params={"include-provisional": "maybe"}, timeout=60)
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert "include-provisional: 'maybe' is not true or false" in error["message"]
        assert error["field"] == "include-provisional"


def test_estimates_use_the_power_model_given(tmp_path: Path) -> None:
    """The placement's power model prices an estimate: a bigger PUE scales it."""
    from carbon.accounting.provisional import estimate

    path = tmp_path / "l.sqlite"
    _fill(path, NOW)
    reader = open_reader(path)
    try:
        base = estimate(reader, power=PowerModel(), policy=AccountingPolicy(), now=NOW)
        more = estimate(reader, power=PowerModel(pue=1.5), policy=AccountingPolicy(), now=NOW)
    finally:
        reader.close()
    assert [u.uid for u in base] == ["uid-000000", "uid-000001"]
    assert base[0].energy_kwh == pytest.approx(POD0_KWH)
    assert more[0].energy_kwh == pytest.approx(POD0_KWH * 1.5 / 1.2)
    assert base[0].note is not None and "provisional" in base[0].note
