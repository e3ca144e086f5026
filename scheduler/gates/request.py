"""What a gated pod asks: its deadline, expected duration and release group, read from the pod.

A pod opts in with the scheduling gate ``lowcarb.dev/carbon-window`` plus the annotations
``lowcarb.dev/deadline`` (RFC 3339, or a duration after creation such as ``12h``) and
``lowcarb.dev/expected-duration``. :func:`parse_request` turns them, with the class's
:class:`ShiftRules`, into a :class:`Request` (earliest start, latest safe start = deadline -
expected duration - safety margin) or an :class:`Invalid` that says precisely why the pod cannot
be held. Pods of one Job, JobSet or PodGroup share a :func:`group_of` key and are released
together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from scheduler import wire
from scheduler.names import ANN_DEADLINE, ANN_DURATION, GATE
from scheduler.policy.model import parse_duration

PODGROUP_LABELS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
JOB_LABELS = ("batch.kubernetes.io/job-name", "job-name")

ReleaseReason = Literal[
    "planned",
    "latest-start",
    "no-saving",
    "no-forecast",
    "invalid",
    "deadline-passed",
    "too-long",
    "disabled",
    "group",
]


@dataclass(frozen=True, slots=True)
class ShiftRules:
    """What the policy says for one pod: may it wait, how long at most, for what saving."""

    enabled: bool = True
    max_delay_s: float = 24 * 3600.0
    min_saving: float = 0.1
    default_duration_s: float = 3600.0
    zones: tuple[str, ...] = ()


RulesFor = Callable[[wire.Pod], ShiftRules]


@dataclass(slots=True)
class Request:
    """A gated pod's timing: earliest start (now), latest safe start, expected duration."""

    earliest: float
    latest: float
    duration: float


@dataclass(slots=True)
class Invalid:
    """A pod that cannot be held, and why (released at once with this reason)."""

    reason: ReleaseReason
    message: str


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_request(
    pod: wire.Pod, rules: ShiftRules, now: float, margin_s: float = 300.0
) -> Request | Invalid:
    """Read deadline and expected duration; say precisely why a pod cannot be held."""
    if not rules.enabled:
        return Invalid("disabled", "temporal shifting is disabled for this pod's class")
    ann = pod.metadata.annotations or {}
    created = now
    if pod.metadata.creationTimestamp:
        with contextlib.suppress(ValueError):
            created = _epoch(pod.metadata.creationTimestamp)
    text = ann.get(ANN_DURATION)
    if text is None:
        duration = rules.default_duration_s
    else:
        try:
            duration = parse_duration(text)
        except ValueError as exc:
            return Invalid("invalid", f"annotation {ANN_DURATION}: {exc}")
    latest = created + rules.max_delay_s
    text = ann.get(ANN_DEADLINE)
    if text is not None:
        try:
            deadline = _epoch(text) if "T" in text else created + parse_duration(text)
        except ValueError:
            return Invalid(
                "invalid",
                f"annotation {ANN_DEADLINE}={text!r} is neither an RFC 3339 time "
                "(2026-11-28T18:00:00Z) nor a duration after creation (12h)",
            )
        if deadline <= now:
            return Invalid("deadline-passed", f"deadline {clock_text(deadline)} has already passed")
        if deadline - duration - margin_s <= now:
            return Invalid(
                "too-long",
                f"expected duration {text_duration(duration)} does not fit before the "
                f"deadline {clock_text(deadline)}",
            )
        latest = min(latest, deadline - duration - margin_s)
    return Request(earliest=now, latest=max(latest, now), duration=duration)


def text_duration(seconds: float) -> str:
    """``2h`` or ``1h30m`` (Event notes)."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if rest else f"{hours}h"


def clock_text(ts: float, now: float | None = None) -> str:
    """``14:00Z`` within 20 h of ``now``, else the date too (Event notes)."""
    when = datetime.fromtimestamp(ts, UTC)
    if now is not None and abs(ts - now) < 20 * 3600:
        return when.strftime("%H:%MZ")
    return when.strftime("%Y-%m-%d %H:%MZ")


def group_of(pod: wire.Pod) -> str:
    """Pods of one PodGroup, JobSet or Job share a key and are released together."""
    meta = pod.metadata
    labels = meta.labels or {}
    for label in PODGROUP_LABELS:
        if labels.get(label):
            return f"podgroup/{meta.namespace}/{labels[label]}"
    if labels.get(JOBSET_LABEL):
        return f"jobset/{meta.namespace}/{labels[JOBSET_LABEL]}"
    for ref in meta.ownerReferences or ():
        if ref.kind == "Job" and ref.name:
            return f"job/{meta.namespace}/{ref.name}"
    for label in JOB_LABELS:
        if labels.get(label):
            return f"job/{meta.namespace}/{labels[label]}"
    return f"pod/{meta.uid}"


def gate_index(pod: wire.Pod) -> int | None:
    """Where our gate sits in ``spec.schedulingGates`` (None: not there)."""
    for i, gate in enumerate(pod.spec.schedulingGates or ()):
        if gate.name == GATE:
            return i
    return None
