"""``lowcarb carbon show`` via typer's CliRunner: JSON shape, table, exit codes, --policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scheduler.cli.carbon import app
from scheduler.cli.main import app as lowcarb
from tests.support.carbon import LoopbackServer, fixture, fixture_route

runner = CliRunner()
PinClock = Callable[[datetime], None]
EM = "/v3/carbon-intensity"


def test_json_shape_offline_default() -> None:
    result = runner.invoke(app, ["show", "--zones", "DE,FR,GB", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["zones"] and list(payload["zones"]) == ["DE", "FR", "GB"]
    de = payload["zones"]["DE"]
    assert de == {
        "g_per_kwh": 481.5,
        "source": "static",
        "age_s": 0,
        "kind": "average",
        "stale": False,
    }
    assert isinstance(de["age_s"], int)


def test_unknown_zone_exits_1_with_a_named_reason() -> None:
    result = runner.invoke(app, ["show", "--zones", "DE,ATLANTIS", "--json"])
    assert result.exit_code == 1
    zones = json.loads(result.stdout)["zones"]
    assert zones["DE"]["source"] == "static"
    missing = zones["ATLANTIS"]
    assert (missing["g_per_kwh"], missing["source"], missing["reason"]) == (
        None,
        None,
        "unknown_zone",
    )
    assert "(static)" in missing["message"] and "carbon.static: {ATLANTIS:" in missing["message"]


def test_unknown_zone_reason_in_the_table() -> None:
    result = runner.invoke(app, ["show", "--zones", "ATLANTIS,SE"])
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "unknown_zone" in out and "ATLANTIS: unknown_zone no source in the fallback chain" in out


def test_table_output_and_forecast_column() -> None:
    result = runner.invoke(app, ["show", "--zones", "SE-SE3", "--forecast", "24h"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "SE-SE3" in out and "static" in out and "fc mean" in out and "next 24h" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--zones", "DE", "--forecast", "tomorrow"], "--forecast"),
        (["--zones", " , "], "--zones"),
        (["--zones", "DE", "--provider", "nope"], "unknown provider 'nope'"),
    ],
)
def test_bad_input_exits_2_naming_the_option(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["show", *args])
    assert result.exit_code == 2
    assert needle in result.output


def test_bad_policy_section_exits_2(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"carbon": {"fallback": ["ukgrid"]}}))
    result = runner.invoke(app, ["show", "--zones", "DE", "--policy", str(policy)])
    assert result.exit_code == 2
    assert "carbon.fallback" in result.output


BAD_POLICY = """\
carbon:
  providers:
    - {name: em, type: electricitymaps, refresh: soon}
  fallback: [em]
classes:
  Batch: {}
"""


def test_bad_policy_is_reported_as_policy_validate_reports_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BAD_POLICY)
    validate = runner.invoke(lowcarb, ["policy", "validate", str(policy)])
    issues = validate.stderr.splitlines()[:-1]  # then "{policy}: invalid (3 errors)"
    assert [line.split(":")[1] for line in issues] == ["3", "4", "6"], validate.stderr
    result = runner.invoke(lowcarb, ["carbon", "show", "--zones", "DE", "--policy", str(policy)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(issues[0]))
    got = [line[line.index(policy.name) :] for line in lines[start : start + len(issues)]]
    assert got == [line[line.index(policy.name) :] for line in issues]  # FILE:LINE:COL: FIELD
    assert "Traceback" not in result.output


def test_policy_with_live_provider_over_loopback(tmp_path: Path, pin_clock: PinClock) -> None:
    pin_clock(datetime(2023, 6, 15, 0, 30, tzinfo=UTC))  # 90 min after the fixture's hour
    routes = [
        fixture_route(f"{EM}/latest", "electricitymaps/carbon-intensity-latest.json"),
        fixture_route(f"{EM}/forecast", "electricitymaps/carbon-intensity-forecast.json"),
    ]
    with LoopbackServer(routes) as server:
        policy = tmp_path / "policy.yaml"
        carbon = {
            "providers": [{"name": "em", "type": "electricitymaps", "url": server.url}],
            "fallback": ["em", "static"],
        }
        policy.write_text(yaml.safe_dump({"carbon": carbon}))
        args = ["show", "--zones", "DE,FR", "--json", "--forecast", "24h", "--policy", str(policy)]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    zones = json.loads(result.stdout)["zones"]
    assert zones["DE"]["source"] == "em" and zones["DE"]["g_per_kwh"] == 434.0
    assert 5400 <= zones["DE"]["age_s"] < 5460 and zones["DE"]["stale"] is False
    assert zones["FR"]["source"] == "em"  # same fixture body for every zone
    hours = fixture("electricitymaps/carbon-intensity-forecast.json")["forecast"]
    low = min(hours, key=lambda h: h["carbonIntensity"])
    fc = zones["DE"]["forecast"]
    assert fc["points"] == len(hours) == 24
    assert fc["min_g_per_kwh"] == low["carbonIntensity"]
    assert fc["min_at"] == datetime.fromisoformat(low["datetime"]).timestamp()
    values = [h["carbonIntensity"] for h in hours]
    assert min(values) <= fc["mean_g_per_kwh"] <= max(values)


def test_provider_down_falls_back_exit_0(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [
        fixture_route(f"{EM}/latest", "electricitymaps/error-401-invalid-auth-token.json", 401)
    ]
    with LoopbackServer(routes) as server:
        monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_URL", server.url)
        args = ["show", "--zones", "DE", "--provider", "electricitymaps", "--json"]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    de = json.loads(result.stdout)["zones"]["DE"]
    assert de["source"] == "static" and de["g_per_kwh"] == 481.5


def test_fallback_accepts_repeats_and_commas(
    monkeypatch: pytest.MonkeyPatch, pin_clock: PinClock
) -> None:
    pin_clock(datetime(2023, 3, 14, 3, 40, tzinfo=UTC))  # 10 min into the fixture's half-hour
    routes = [fixture_route("/intensity", "uk-carbon-intensity/intensity.json")]
    with LoopbackServer(routes) as server:
        monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_URL", "http://127.0.0.1:9")  # nothing listens
        monkeypatch.setenv("LOWCARB_UKGRID_URL", server.url)
        args = ["show", "--zones", "GB,DE", "--json"]
        args += ["--provider", "electricitymaps", "--fallback", "ukgrid,static"]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    zones = json.loads(result.stdout)["zones"]
    assert zones["GB"]["source"] == "ukgrid" and zones["GB"]["g_per_kwh"] == 71.0
    assert 600 <= zones["GB"]["age_s"] < 660 and zones["GB"]["stale"] is False
    assert zones["DE"]["source"] == "static"  # ukgrid knows only GB, electricitymaps is down


def test_carbonaware_without_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOWCARB_CARBONAWARE_URL", raising=False)
    result = runner.invoke(app, ["show", "--zones", "DE", "--provider", "carbonaware"])
    assert result.exit_code == 2
    assert "LOWCARB_CARBONAWARE_URL" in result.output
