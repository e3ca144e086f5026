"""The one wall clock (``carbon.clock``): ``LOWCARB_NOW`` and pins move every date lowcarb reads.

The suite must pass whatever the system date (``make pytest-future`` runs it 400 days ahead).
Here the clock is pinned far from today and from every fixture, and each path that reads the
date (every default ``clock``, report "now" and its date stamp, the CLI) must see it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import carbon
import scheduler
from carbon import clock
from carbon.accounting.ledger import Ledger
from carbon.accounting.report import ReportOptions, build_report, parse_time
from tests.support.fakeapi import lowcarb_command

PinClock = Callable[[datetime], None]
FAR = datetime(2031, 7, 1, 12, 0, tzinfo=UTC)  # years from today and from every fixture
SLACK_S = 60.0  # the pinned clock ticks on while a test runs


@pytest.fixture
def env_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """Set (or unset) ``LOWCARB_NOW`` and make the clock read it afresh."""

    def set_env(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(clock.ENV, raising=False)
        else:
            monkeypatch.setenv(clock.ENV, value)
        clock.reset()

    yield set_env
    clock.reset()


def near_far(ts: float) -> bool:
    return FAR.timestamp() <= ts < FAR.timestamp() + SLACK_S


def test_without_lowcarb_now_the_clock_is_the_system_clock(
    env_clock: Callable[[str | None], None],
) -> None:
    env_clock(None)
    assert clock.offset() == 0.0
    env_clock("  ")
    assert clock.offset() == 0.0


@pytest.mark.parametrize(
    "value",
    ["2031-07-01T12:00:00Z", "2031-07-01T14:00:00+02:00", "2031-07-01T12:00:00", "1940673600"],
)
def test_lowcarb_now_starts_the_clock_there_and_it_ticks_on(
    env_clock: Callable[[str | None], None], value: str
) -> None:
    env_clock(value)
    first = clock.wall()
    assert near_far(first)
    time.sleep(0.02)
    assert clock.wall() > first


@pytest.mark.parametrize("value", ["soon", "nan", "2031-13-01", "12h"])
def test_a_bad_lowcarb_now_is_named_with_the_fix(
    env_clock: Callable[[str | None], None], value: str
) -> None:
    env_clock(value)
    with pytest.raises(clock.ClockError) as exc:
        clock.wall()
    assert str(exc.value) == (
        f"LOWCARB_NOW={value!r} is not an instant; write an ISO 8601 date-time such as "
        "2026-11-28T12:15:00Z, or epoch seconds, or unset it to use the system clock"
    )


def test_pin_wins_until_reset(env_clock: Callable[[str | None], None]) -> None:
    env_clock("2040-01-01T00:00:00Z")
    clock.pin(FAR.timestamp())
    assert near_far(clock.wall())
    clock.reset()
    assert clock.wall() >= datetime(2040, 1, 1, tzinfo=UTC).timestamp()


def test_cli_rejects_a_bad_lowcarb_now_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [*lowcarb_command(), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LOWCARB_NOW": "next tuesday"},
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: LOWCARB_NOW='next tuesday' is not an instant; write an ISO 8601 date-time such "
        "as 2026-11-28T12:15:00Z, or epoch seconds, or unset it to use the system clock"
    ]


def default_clocks() -> dict[str, Callable[[], float]]:
    """Every default ``clock`` of a class or function in lowcarb's packages, by qualified name."""
    found: dict[str, Callable[[], float]] = {}
    for package in (carbon, scheduler):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if getattr(obj, "__module__", None) != module.__name__:
                    continue
                default = _clock_default(obj)
                if callable(default):
                    found[f"{module.__name__}.{name}"] = default
    return found


def _clock_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name == "clock":
                return f.default
        return None
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return None
    try:
        param = inspect.signature(obj).parameters.get("clock")
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is param.empty else param.default


def test_every_default_clock_reads_the_pinned_date(pin_clock: PinClock) -> None:
    pin_clock(FAR)
    clocks = default_clocks()
    dated = {name for name, read in clocks.items() if read is not time.monotonic}
    # the components that date what they see: carbon data, decisions, gates, the ledger
    assert {
        "carbon.cache.CarbonCache",
        "carbon.accounting.accountant.Accountant",
        "carbon.providers.electricitymaps.ElectricityMaps",
        "carbon.providers.replay.ReplayProvider",
        "carbon.providers.watttime.WattTime",
        "scheduler.extender.service.Extender",
        "scheduler.gates.controller.GateController",
        "scheduler.extender.records.LedgerSink",
    } <= dated
    wrong = {name: clocks[name]() for name in sorted(dated) if not near_far(clocks[name]())}
    assert not wrong, f"these read the system date instead of carbon.clock: {wrong}"


def test_report_now_and_generated_at_follow_the_clock(pin_clock: PinClock, tmp_path: Path) -> None:
    pin_clock(FAR)
    assert near_far(parse_time("now", "--to"))
    Ledger(tmp_path / "l.sqlite").close()
    doc = json.loads(build_report(tmp_path / "l.sqlite", ReportOptions(format="json")))
    assert near_far(datetime.fromisoformat(doc["generated_at"]).timestamp())
