"""The test-only crash hook: parsed from LOWCARB_CRASH_AT, counts down per step, refuses typos."""

from __future__ import annotations

import pytest

from scheduler.extender.crashpoint import CrashPoints


def test_unset_never_fires() -> None:
    points = CrashPoints("")
    for step in ("before-binding", "after-binding", "after-commit"):
        points.reach(step)
        assert not points.wants(step)


def test_counts_only_its_step_and_fires_on_the_nth() -> None:
    points = CrashPoints("after-binding:3")
    points.reach("before-binding")
    points.reach("after-commit")
    assert (points.step, points.left) == ("after-binding", 3)
    points.reach("after-binding")
    assert not points.wants("after-binding")
    points.reach("after-binding")
    assert points.wants("after-binding") and not points.wants("after-commit")
    # the next reach("after-binding") would SIGKILL this very process


def test_a_misspelt_step_is_refused() -> None:
    with pytest.raises(ValueError, match=r"LOWCARB_CRASH_AT='after-bind'.*after-binding"):
        CrashPoints("after-bind")


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWCARB_CRASH_AT", "after-commit")
    assert CrashPoints().wants("after-commit")
    monkeypatch.delenv("LOWCARB_CRASH_AT")
    assert CrashPoints().step == ""
