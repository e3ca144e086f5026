"""Prometheus metrics of the gate controller (process-wide, served with the others at /metrics).

The gauges describe the pods held now (count, planned delay, expected saving) and are set by
:func:`export_held` after every planning pass; the counters grow with releases, the hours pods
actually waited, and failed API calls. Every release reason's series exists from the start at 0,
so Prometheus's ``increase()`` counts a reason's first releases too (a series that appears with
its first value has no earlier sample to count from). With leader election,
``lowcarb_gate_leader`` is 1 in the one process whose gate controller runs, and leadership changes
are counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, get_args

import numpy as np
from prometheus_client import Counter, Gauge

from scheduler.gates.request import ReleaseReason

GATE_HELD = Gauge("lowcarb_gate_pods_held", "Gated pods currently held for a cleaner hour")
GATE_PLANNED_DELAY = Gauge(
    "lowcarb_gate_planned_delay_hours", "Sum over held pods of the planned delay (hours)"
)
GATE_EXPECTED_SAVING = Gauge(
    "lowcarb_gate_expected_saving_ratio",
    "Mean expected relative intensity saving of the held pods (0.62 = -62%)",
)
GATE_DELAY = Counter("lowcarb_gate_delay_hours_total", "Hours released pods actually waited")
GATE_RELEASES = Counter("lowcarb_gate_releases_total", "Gated pods released, by reason", ["reason"])
for _reason in get_args(ReleaseReason):
    GATE_RELEASES.labels(_reason)
GATE_API_ERRORS = Counter("lowcarb_gate_api_errors_total", "Failed gate API calls", ["kind"])
GATE_LEADER = Gauge(
    "lowcarb_gate_leader", "1 while this process holds the gate controller's Lease (runs it)"
)
GATE_LEADER_CHANGES = Counter(
    "lowcarb_gate_leader_changes_total",
    "Gate controller leadership acquired or lost by this process",
    ["event"],
)
for _event in ("acquired", "lost"):  # both series exist (at 0) from the start
    GATE_LEADER_CHANGES.labels(event=_event)


class Planned(Protocol):
    """What :func:`export_held` reads of a held pod (``records.Held``)."""

    @property
    def planned(self) -> float | None: ...
    @property
    def releasing(self) -> bool: ...
    @property
    def mean_now(self) -> float | None: ...
    @property
    def mean_at(self) -> float | None: ...


def export_held(pods: Iterable[Planned], now: float) -> None:
    """Set the gauges from the pods held now (planned and not being released)."""
    held = [h for h in pods if h.planned is not None and not h.releasing]
    GATE_HELD.set(len(held))
    GATE_PLANNED_DELAY.set(sum(max(0.0, (h.planned or now) - now) for h in held) / 3600.0)
    savings = [1.0 - (h.mean_at or 0.0) / h.mean_now for h in held if h.mean_now and h.mean_now > 0]
    GATE_EXPECTED_SAVING.set(float(np.mean(savings)) if savings else 0.0)
