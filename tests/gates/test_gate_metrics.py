"""The gate metrics a dashboard reads: every release reason's series exists from the start, so
Prometheus's ``increase()`` counts a reason's first releases (a series that appears with its
first value has no earlier sample, and its first jump is lost)."""

from __future__ import annotations

import typing

from prometheus_client import generate_latest

from scheduler.gates import metrics  # noqa: F401  (registers the gate metrics)
from scheduler.gates.request import ReleaseReason


def test_every_release_reason_is_exported_before_any_release() -> None:
    text = generate_latest().decode()
    exported = {
        line.split('reason="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("lowcarb_gate_releases_total{")
    }
    assert exported == set(typing.get_args(ReleaseReason))
