"""Hot reload: a valid edit is swapped in; an invalid one keeps the last good policy, logs every
error with its position and sets ``lowcarb_policy_reload_failed`` until a good file lands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from scheduler.engine import EngineStore
from scheduler.policy.validate import PolicyError
from tests.support.policy import POLICIES

GOOD = (POLICIES / "default.yaml").read_text()
BROKEN = GOOD.replace(
    "    gpuMode: fgd\n    expectedDuration: 8h",
    "    prices: {carbonPerTonne: -1}\n    gpuMode: fgd\n    expectedDuration: 8h",
    1,
)
V1 = GOOD.replace("apiVersion: lowcarb.dev/v2", "apiVersion: lowcarb.dev/v1", 1).replace(
    "    expectedDuration: 8h", "    weights: {gpu_fit: 0.4, carbon: 0.6}\n    expectedDuration: 8h"
)


def failed_gauge() -> float | None:
    return REGISTRY.get_sample_value("lowcarb_policy_reload_failed")


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("lowcarb_policy_reloads_total", {"outcome": outcome}) or 0.0


def test_broken_edit_keeps_last_good_and_sets_the_metric(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = EngineStore(path)
    good_policy, good_engine = store.policy, store.engine()
    assert BROKEN != GOOD
    invalid_before = reloads("invalid")

    path.write_text(BROKEN)
    with capture_logs() as logs:
        assert store.reload() is False
    assert store.policy is good_policy and store.engine() is good_engine
    assert failed_gauge() == 1.0
    assert reloads("invalid") == invalid_before + 1
    (event,) = [e for e in logs if e["log_level"] == "error"]
    line = 1 + BROKEN.splitlines().index("    prices: {carbonPerTonne: -1}")
    assert event["errors"] == [
        f"{path}:{line}:30: classes.training.prices.carbonPerTonne: must be >= 0.0 (got -1)"
    ]
    assert store.last_error is not None and f"{path}:{line}:30" in store.last_error

    # the same broken bytes are not re-reported on every poll
    with capture_logs() as logs:
        assert store.reload() is False
    assert logs == []

    edited = GOOD.replace("expectedDuration: 8h", "expectedDuration: 10h")
    path.write_text(edited)
    assert store.reload() is True
    assert store.policy.classes["training"].duration_s == 10 * 3600
    assert store.engine() is not good_engine
    # what the terms learned (the GPU term's workload model) survives the edit
    assert store.engine().terms["gpu_fit"] is good_engine.terms["gpu_fit"]
    assert failed_gauge() == 0.0
    assert store.last_error is None


def test_unreadable_file_is_a_failed_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = EngineStore(path)
    path.write_bytes(b"\xff\xfe not utf-8")
    assert store.reload() is False
    assert failed_gauge() == 1.0
    assert store.last_error == (
        f"{path}: not UTF-8 text (byte 0xff at offset 0); save the policy as UTF-8"
    )


def test_invalid_file_at_start_is_refused_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BROKEN)
    with pytest.raises(PolicyError) as info:
        EngineStore(path)
    assert [i.path for i in info.value.issues] == ["classes.training.prices.carbonPerTonne"]


def test_a_v1_file_never_replaces_the_good_policy(tmp_path: Path) -> None:
    """A class-weights (v1) file on reload: one error naming the migration, the v2 policy stays."""
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = EngineStore(path)
    good_engine = store.engine()
    path.write_text(V1)
    with capture_logs() as logs:
        assert store.reload() is False
    assert store.engine() is good_engine
    (event,) = [e for e in logs if e["log_level"] == "error"]
    (error,) = event["errors"]
    version_line = 1 + V1.splitlines().index(
        "apiVersion: lowcarb.dev/v1"
        + GOOD.split("apiVersion: lowcarb.dev/v2", 1)[1].split("\n", 1)[0]
    )
    weights_line = 1 + V1.splitlines().index("    weights: {gpu_fit: 0.4, carbon: 0.6}")
    assert error == (
        f"{path}:{version_line}:13: apiVersion: lowcarb.dev/v1 is the class-weights model, "
        f"removed in v2; run 'lowcarb policy migrate {path}' (writes the v2 file) or set "
        f"apiVersion: lowcarb.dev/v2 and delete each class's weights (line {weights_line})"
    )
    assert failed_gauge() == 1.0


async def test_watch_task_picks_up_edits(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = EngineStore(path)
    seen: list[float] = []
    store.on_change(lambda p: seen.append(p.classes["batch"].duration_s))
    store.start(interval_s=0.01)
    try:
        path.write_text(GOOD.replace("expectedDuration: 2h", "expectedDuration: 3h"))
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [3 * 3600.0]
        assert failed_gauge() == 0.0
        path.write_text(BROKEN)
        for _ in range(500):
            if failed_gauge() == 1.0:
                break
            await asyncio.sleep(0.01)
        assert failed_gauge() == 1.0
        assert store.policy.classes["batch"].duration_s == 3 * 3600.0
    finally:
        await store.stop()


def test_warnings_are_logged_but_the_policy_is_used(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = EngineStore(path)
    path.write_text(GOOD.replace("ownerKinds: [Job, CronJob]", "ownerKinds: [job, CronJob]"))
    with capture_logs() as logs:
        assert store.reload() is True
    (event,) = [e for e in logs if e["log_level"] == "warning"]
    (warning,) = event["warnings"]
    assert "classes.batch.selector.ownerKinds[0]: owner kind 'job' is not a kind" in warning
    assert store.policy.classes["batch"].selector.ownerKinds == ["job", "CronJob"]
