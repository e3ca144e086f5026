"""What the gate controller keeps and reports about each gated pod: memory, Events, ledger.

:class:`Held` is the controller's record of one pod it holds (its plan, the intensities it was
held for, retry state); :class:`Outcome` what finally happened to it (kept for tests and the CLI).
Every decision is told twice: as a Kubernetes Event on the pod (:class:`EventPoster`: posted in
the background, a few at a time so thousands of holds never flood the API server, and never
blocking or failing a release) and as a ``GateRecord`` in the ledger (:func:`write_record`, which
logs and carries on when the ledger fails).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from scheduler import wire
from scheduler.gates.metrics import GATE_API_ERRORS
from scheduler.gates.request import ReleaseReason, clock_text
from scheduler.kube import KubeClient, KubeError
from scheduler.names import GATE_CONTROLLER

log = structlog.get_logger("lowcarb.gates")

EventType = Literal["Normal", "Warning"]
OutcomeKind = Literal["released", "gone", "released-by-other"]


@dataclass(slots=True)
class Held:
    """A gated pod the controller holds: its latest object, plan and release state."""

    pod: wire.Pod
    group: str
    first_seen: float
    planned: float | None = None
    mean_now: float | None = None
    mean_at: float | None = None
    zone: str | None = None
    announced: float | None = None
    intensity_at_hold: float | None = None
    retry_at: float = 0.0
    attempts: int = 0
    releasing: bool = False
    release_reason: ReleaseReason | None = None
    release_note: str = ""

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"


@dataclass(slots=True)
class Outcome:
    """What happened to one gated pod (kept for tests, the CLI and the ledger)."""

    uid: str
    key: str
    outcome: OutcomeKind
    reason: str
    at: float
    planned: float | None = None


def hold_note(h: Held, saving: float, now: float) -> str:
    """The Event note of a hold: until when, and the forecast it waits for."""
    return (
        f"held until {clock_text(h.planned or now, now)}: forecast {h.mean_at:.0f} vs "
        f"{h.mean_now:.0f} gCO2e/kWh now, -{saving * 100:.0f}%"
    )


def planned_release_note(h: Held) -> str:
    """The Event note of a release at the planned cleaner hour."""
    return (
        f"released at the planned cleaner hour: forecast {h.mean_at:.0f} gCO2e/kWh vs "
        f"{h.intensity_at_hold or h.mean_now:.0f} when held"
    )


# --- the ledger ---------------------------------------------------------------------------------


class GateLedger(Protocol):
    """Where gate records go (``carbon.accounting.ledger.Ledger``)."""

    def append(self, record: Any) -> Any: ...


def write_record(ledger: GateLedger | None, h: Held, outcome: str, reason: str, at: float) -> None:
    """Append the pod's ``GateRecord``; a failing ledger is logged and never stops a release."""
    if ledger is None:
        return
    from carbon.accounting.ledger import GateRecord

    meta = h.pod.metadata
    record = GateRecord(
        uid=h.uid,
        namespace=meta.namespace,
        name=meta.name,
        held_at=h.first_seen,
        planned_release=h.planned if h.planned is not None else at,
        actual_release=at if outcome == "released" else None,
        intensity_now_g_per_kwh=h.intensity_at_hold,
        intensity_release_g_per_kwh=h.mean_at if outcome == "released" else None,
        zone=h.zone,
        reason=f"{outcome}: {reason}",
    )
    try:
        ledger.append(record)
    except Exception as exc:  # the ledger must never stop a release
        log.warning("gate_ledger_failed", pod=h.key, error=str(exc))


# --- Kubernetes Events --------------------------------------------------------------------------


@dataclass
class EventPoster:
    """Posts the controller's Events in the background, at most ``slots`` at a time."""

    client: KubeClient
    dry_run: bool = False
    slots: int = 8
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None

    def post(
        self, pod: wire.Pod, reason: str, action: str, note: str, type_: EventType = "Normal"
    ) -> None:
        """Queue an Event on ``pod`` (a dry run only logs it)."""
        if self.dry_run:
            log.info("gate_event", pod=pod.key, reason=reason, note=note)
            return
        task = asyncio.get_running_loop().create_task(self._post(pod, reason, action, note, type_))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(
        self, pod: wire.Pod, reason: str, action: str, note: str, type_: EventType
    ) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.slots)
        try:
            async with self._slots:  # thousands of holds must not flood the API server
                await self.client.create_event(
                    pod,
                    reason=reason,
                    note=note,
                    action=action,
                    type_=type_,
                    controller=GATE_CONTROLLER,
                    instance="lowcarb-gates",
                )
        except KubeError as exc:
            GATE_API_ERRORS.labels(kind="event").inc()
            log.warning("gate_event_failed", pod=pod.key, error=str(exc))

    async def drain(self) -> None:
        """Wait for the Events already being posted (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
