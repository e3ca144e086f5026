"""Gate controller (temporal shifting): hold gated pods until the cleanest hour before deadline.

A pod opts in with the scheduling gate ``lowcarb.dev/carbon-window`` plus the annotations
``lowcarb.dev/deadline`` (RFC 3339, or a duration after creation such as ``12h``) and
``lowcarb.dev/expected-duration``. The controller watches unbound pods (gates cannot be selected
server-side, so it filters client-side), and on every tick re-plans all held pods at once
(:func:`plan_batch`: numpy over pods x forecast intervals, per zone the pod may run in) from the
carbon cache's forecasts; a pod is held only when the expected saving reaches the class's
``temporalShift.minSaving``, and never past its latest safe start (deadline - expected duration -
safety margin). Pods of one Job, JobSet or PodGroup are released together, at the earliest
release time of any member.

Release removes only our gate with a JSON patch whose ``test`` op checks our gate's name at the
index we saw: a concurrent change to the gate list makes the API server answer 422 (never
overwriting someone else's edit); the controller then re-reads the pod and retries, or finds the
gate already gone / the pod deleted and records that instead. A strategic-merge ``$patch: delete``
would also remove ours by name, but guarding it needs a resourceVersion precondition that fails on
every unrelated write (status, labels); the JSON ``test`` guards exactly the entry we remove.
API errors and outages are retried with backoff, so a pod is never stuck and never released
twice. Each decision becomes a Kubernetes Event, a ledger record and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import Counter, Gauge

from carbon.aio import cancel_all
from carbon.backoff import Backoff
from carbon.clock import wall
from carbon.types import CarbonView
from scheduler import wire
from scheduler.gates.planner import plan_starts
from scheduler.kube import UNASSIGNED, ApiError, KubeClient, KubeError, pod_reflector
from scheduler.names import ANN_DEADLINE, ANN_DURATION, GATE, GATE_CONTROLLER
from scheduler.policy.model import parse_duration

log = structlog.get_logger("lowcarb.gates")

PODGROUP_LABELS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
JOB_LABELS = ("batch.kubernetes.io/job-name", "job-name")

FloatArray = npt.NDArray[np.float64]

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
GATE_API_ERRORS = Counter("lowcarb_gate_api_errors_total", "Failed gate API calls", ["kind"])

EventType = Literal["Normal", "Warning"]
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


# --- settings and per-pod requests --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftRules:
    """What the policy says for one pod: may it wait, how long at most, for what saving."""

    enabled: bool = True
    max_delay_s: float = 24 * 3600.0
    min_saving: float = 0.1
    default_duration_s: float = 3600.0
    zones: tuple[str, ...] = ()


RulesFor = Callable[[wire.Pod], ShiftRules]


@dataclass(frozen=True, slots=True)
class GateSettings:
    tick_s: float = 30.0
    safety_margin_s: float = 300.0  # release this long before the latest start
    min_hold_s: float = 60.0  # a plan starting sooner than this is "now"
    forecast_grace_s: float = 180.0  # after start, wait this long for forecasts before fail-open
    reannounce_shift_s: float = 1800.0  # a new Event when the plan moves this much
    max_parallel_patches: int = 16


@dataclass(slots=True)
class Request:
    """A gated pod's timing: earliest start (now), latest safe start, expected duration."""

    earliest: float
    latest: float
    duration: float


@dataclass(slots=True)
class Invalid:
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
            return Invalid("deadline-passed", f"deadline {_clock(deadline)} has already passed")
        if deadline - duration - margin_s <= now:
            return Invalid(
                "too-long",
                f"expected duration {text_duration(duration)} does not fit before the "
                f"deadline {_clock(deadline)}",
            )
        latest = min(latest, deadline - duration - margin_s)
    return Request(earliest=now, latest=max(latest, now), duration=duration)


def text_duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if rest else f"{hours}h"


def _clock(ts: float, now: float | None = None) -> str:
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
    for i, gate in enumerate(pod.spec.schedulingGates or ()):
        if gate.name == GATE:
            return i
    return None


# --- vectorised planning ------------------------------------------------------------------------


@dataclass(slots=True)
class BatchPlan:
    """Per pod: start time, mean intensity from there and from now, best zone (-1: none)."""

    start: FloatArray
    mean_at: FloatArray
    mean_now: FloatArray
    zone: npt.NDArray[np.int64]
    hold: npt.NDArray[np.bool_]
    zones: list[str]

    @property
    def saving(self) -> FloatArray:
        safe = np.where(self.mean_now > 0, self.mean_now, 1.0)
        return np.asarray(np.where(self.mean_now > 0, 1.0 - self.mean_at / safe, 0.0))

    @property
    def has_forecast(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.zone >= 0)


def _profile(series: Any, t0: float, t1: float) -> tuple[FloatArray, FloatArray, float] | None:
    """Edges/values covering [t0, t1] (first/last value held flat), and the forecast's end."""
    starts = np.asarray(series.starts, dtype=np.float64)
    ends = np.asarray(series.ends, dtype=np.float64)
    values = np.asarray(series.values, dtype=np.float64)
    ok = np.isfinite(values) & (values >= 0)
    starts, ends, values = starts[ok], ends[ok], values[ok]
    if values.size == 0:
        return None
    horizon = float(ends[-1])
    edges = np.append(starts, horizon)
    if edges[0] > t0:
        edges = np.concatenate(([t0], edges))
        values = np.concatenate((values[:1], values))
    if edges[-1] < t1:
        edges = np.append(edges, t1)
        values = np.append(values, values[-1])
    return edges, values, horizon


def plan_batch(
    view: CarbonView,
    zones_per_pod: Sequence[Sequence[str]],
    earliest_s: npt.ArrayLike,
    latest_s: npt.ArrayLike,
    duration_s: npt.ArrayLike,
    min_saving_frac: npt.ArrayLike,
    min_hold_s: float = 60.0,
) -> BatchPlan:
    """Best start per pod over the forecasts of the zones it may run in (no loop over pods).

    Candidate starts are limited to runs the forecast fully covers (re-planned when forecasts
    refresh); the baseline is the best zone now. A pod is held when its best plan starts later
    than ``min_hold_s`` from now and saves at least ``min_saving``.
    """
    earliest = np.asarray(earliest_s, dtype=np.float64)
    latest = np.asarray(latest_s, dtype=np.float64)
    duration = np.asarray(duration_s, dtype=np.float64)
    min_saving = np.asarray(min_saving_frac, dtype=np.float64)
    n = len(zones_per_pod)
    zones = sorted({z for zs in zones_per_pod for z in zs})
    col = {z: j for j, z in enumerate(zones)}
    member = np.zeros((n, len(zones)), dtype=bool)
    for i, zs in enumerate(zones_per_pod):
        member[i, [col[z] for z in zs]] = True
    start = np.full((n, len(zones)), np.inf)
    at = np.full((n, len(zones)), np.inf)
    now_mean = np.full((n, len(zones)), np.inf)
    t0 = float(earliest.min()) if n else 0.0
    t1 = float((latest + duration).max()) + 1.0 if n else 0.0
    for j, zone in enumerate(zones):
        rows = np.flatnonzero(member[:, j])
        series = view.forecast(zone)
        prof = _profile(series, t0, t1) if series is not None else None
        if prof is None or rows.size == 0:
            continue
        edges, values, horizon = prof
        e, d = earliest[rows], duration[rows]
        lat = np.maximum(np.minimum(latest[rows], horizon - d), e)
        plan = plan_starts(edges, values, e, lat, d, min_saving=0.0)
        start[rows, j] = plan.start
        at[rows, j] = plan.mean_at_start
        now_mean[rows, j] = plan.mean_now
    best = np.argmin(at, axis=1) if zones else np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    if zones:
        best_at = at[rows, best]
        best_start = start[rows, best]
        best_now = now_mean.min(axis=1)
    else:
        best_at = best_start = best_now = np.full(n, np.inf)
    found = np.isfinite(best_at)
    zone_idx = np.where(found, best, -1).astype(np.int64)
    safe_now = np.where(found & (best_now > 0), best_now, 1.0)
    saving = np.where(found & (best_now > 0), 1.0 - best_at / safe_now, 0.0)
    hold = found & (saving >= np.maximum(min_saving, 1e-9)) & (best_start > earliest + min_hold_s)
    return BatchPlan(
        start=np.where(hold, best_start, earliest),
        mean_at=np.where(found, np.where(hold, best_at, best_now), np.nan),
        mean_now=np.where(found, best_now, np.nan),
        zone=zone_idx,
        hold=hold,
        zones=zones,
    )


# --- the controller -----------------------------------------------------------------------------


class GateLedger(Protocol):
    """Where gate records go (``carbon.accounting.ledger.Ledger``)."""

    def append(self, record: Any) -> Any: ...


@dataclass(slots=True)
class Held:
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
    outcome: Literal["released", "gone", "released-by-other"]
    reason: str
    at: float
    planned: float | None = None


class _GateHandler:
    def __init__(self, ctl: GateController) -> None:
        self.ctl = ctl

    def on_replace(self, items: list[wire.Pod]) -> None:
        present = {p.metadata.uid for p in items}
        for uid in list(self.ctl.held):
            if uid not in present:
                self.ctl._gone(uid, "deleted while held")
        for pod in items:
            self.on_upsert(pod)

    def on_upsert(self, obj: wire.Pod) -> None:
        self.ctl._observe(obj)

    def on_delete(self, obj: wire.Pod) -> None:
        self.ctl._gone(obj.metadata.uid, "deleted while held")


@dataclass
class GateController:
    """Watches gated pods and releases each at its planned time; see the module docstring."""

    client: KubeClient
    carbon: Callable[[], CarbonView]
    rules_for: RulesFor
    settings: GateSettings = field(default_factory=GateSettings)
    ledger: GateLedger | None = None
    clock: Callable[[], float] = wall
    dry_run: bool = False
    #: planning waits until this is true (the node cache has synced: zones depend on it)
    ready: Callable[[], bool] = lambda: True
    #: asks the carbon cache to refresh these zones (``CarbonCache.track``)
    track_zones: Callable[[Iterable[str]], None] | None = None
    started_at: float = float("-inf")
    held: dict[str, Held] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    released_groups: dict[str, float] = field(default_factory=dict)
    _done: dict[str, float] = field(default_factory=dict)
    reflector: Any = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _events: set[asyncio.Task[None]] = field(default_factory=set)
    _event_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    # -- feeding (from the watch or tests) --

    def _observe(self, pod: wire.Pod) -> None:
        uid = pod.metadata.uid
        if not uid or pod.spec.nodeName:
            return
        if uid in self._done:
            return  # already released or dropped: never twice
        if gate_index(pod) is None:
            h = self.held.pop(uid, None)
            if h is not None and not h.releasing:
                self._finish(h, "released-by-other", "our gate was removed by someone else")
            elif h is not None:
                self.held[uid] = h  # our own patch echoing back: _release records it
            return
        h = self.held.get(uid)
        if h is None:
            self.held[uid] = Held(pod=pod, group=group_of(pod), first_seen=self.clock())
            self._wake.set()
        else:
            h.pod = pod

    def _gone(self, uid: str, why: str) -> None:
        h = self.held.pop(uid, None)
        if h is not None and uid not in self._done:
            self._finish(h, "gone", why)

    # -- planning --

    def plan(self, now: float) -> list[tuple[Held, ReleaseReason, str]]:
        """Re-plan every held pod; return those to release now with reason and Event note."""
        due: list[tuple[Held, ReleaseReason, str]] = []
        todo: list[tuple[Held, Request, ShiftRules]] = []
        for h in self.held.values():
            if h.releasing:
                if h.release_reason is not None and now >= h.retry_at:
                    due.append((h, h.release_reason, h.release_note))
                continue
            rules = self.rules_for(h.pod)
            req = parse_request(h.pod, rules, now, self.settings.safety_margin_s)
            if isinstance(req, Invalid) and req.reason == "too-long" and h.planned is not None:
                note = f"released at the latest safe start ({_clock(now, now)})"
                due.append((h, "latest-start", note))
                continue
            if isinstance(req, Invalid):
                due.append((h, req.reason, f"released: {req.message}"))
                continue
            todo.append((h, req, rules))
        if todo:
            if self.track_zones is not None:
                self.track_zones({z for _, _, r in todo for z in r.zones})
            view = self.carbon()
            plan = plan_batch(
                view,
                [r.zones for _, _, r in todo],
                np.array([q.earliest for _, q, _ in todo]),
                np.array([q.latest for _, q, _ in todo]),
                np.array([q.duration for _, q, _ in todo]),
                np.array([r.min_saving for _, _, r in todo]),
                self.settings.min_hold_s,
            )
            self._apply_plan(todo, plan, now, due)
        return self._with_groups(due, now)

    def _apply_plan(
        self,
        todo: list[tuple[Held, Request, ShiftRules]],
        plan: BatchPlan,
        now: float,
        due: list[tuple[Held, ReleaseReason, str]],
    ) -> None:
        saving = plan.saving
        for i, (h, req, rules) in enumerate(todo):
            if plan.zone[i] < 0:
                if now >= req.latest - self.settings.min_hold_s and h.planned is not None:
                    due.append((h, "latest-start", "released at the latest safe start"))
                    continue
                if now - self.started_at < self.settings.forecast_grace_s:
                    continue  # just started: the carbon cache may not have fetched yet
                zones = ", ".join(rules.zones) or "none known"
                due.append(
                    (h, "no-forecast", f"released: no forecast for zones [{zones}] (fail-open)")
                )
                continue
            h.zone = plan.zones[int(plan.zone[i])]
            h.mean_now, h.mean_at = float(plan.mean_now[i]), float(plan.mean_at[i])
            if h.intensity_at_hold is None:
                h.intensity_at_hold = h.mean_now
            if not plan.hold[i]:
                if now >= req.latest - self.settings.min_hold_s:
                    note = f"released at the latest safe start ({_clock(req.latest, now)})"
                    due.append((h, "latest-start", note))
                elif h.planned is not None and now >= h.planned - self.settings.min_hold_s:
                    due.append((h, "planned", self._note("released", h, float(saving[i]), now)))
                else:
                    pct = float(saving[i]) * 100
                    note = (
                        f"released: no cleaner hour before the deadline (best saving "
                        f"{pct:.0f}% < minSaving {rules.min_saving * 100:.0f}%)"
                    )
                    due.append((h, "no-saving", note))
                continue
            start = float(plan.start[i])
            h.planned = start
            if h.announced is None or abs(start - h.announced) >= self.settings.reannounce_shift_s:
                h.announced = start
                self._spawn_event(h, "CarbonHold", "Hold", self._note("held", h, saving[i], now))

    def _note(self, verb: str, h: Held, saving: float, now: float) -> str:
        if verb == "held":
            return (
                f"held until {_clock(h.planned or now, now)}: forecast {h.mean_at:.0f} vs "
                f"{h.mean_now:.0f} gCO2e/kWh now, -{saving * 100:.0f}%"
            )
        return (
            f"released at the planned cleaner hour: forecast {h.mean_at:.0f} gCO2e/kWh vs "
            f"{h.intensity_at_hold or h.mean_now:.0f} when held"
        )

    def _with_groups(
        self, due: list[tuple[Held, ReleaseReason, str]], now: float
    ) -> list[tuple[Held, ReleaseReason, str]]:
        """Release whole groups: a group goes when its first member goes."""
        groups = {h.group for h, _, _ in due} | {
            h.group for h in self.held.values() if h.group in self.released_groups
        }
        chosen = {h.uid for h, _, _ in due}
        for h in self.held.values():
            if h.releasing or h.uid in chosen or h.group.startswith("pod/"):
                continue
            if h.group in groups:
                note = f"released with its group {h.group}"
                due.append((h, "group", note))
                chosen.add(h.uid)
        return due

    # -- releasing --

    async def run_once(self, now: float | None = None) -> int:
        """One planning pass and the releases it calls for; returns the number released."""
        now = self.clock() if now is None else now
        if not self.ready():
            return 0
        due = self.plan(now)
        self._export_metrics(now)
        if not due:
            return 0
        sem = asyncio.Semaphore(self.settings.max_parallel_patches)

        async def one(item: tuple[Held, ReleaseReason, str]) -> bool:
            async with sem:
                return await self._release(*item, now=now)

        results = await asyncio.gather(*(one(d) for d in due))
        self._export_metrics(now)
        return sum(results)

    async def _release(self, h: Held, reason: ReleaseReason, note: str, *, now: float) -> bool:
        h.releasing, h.release_reason, h.release_note = True, reason, note
        self.released_groups.setdefault(h.group, now)
        if self.dry_run:
            self._finish(h, "released", f"{reason} (dry run)", now)
            return True
        for _ in range(3):
            idx = gate_index(h.pod)
            if idx is None:
                self._finish(h, "released-by-other", "our gate was already gone", now)
                return False
            ops = [
                {"op": "test", "path": f"/spec/schedulingGates/{idx}/name", "value": GATE},
                {"op": "remove", "path": f"/spec/schedulingGates/{idx}"},
            ]
            meta = h.pod.metadata
            try:
                pod = await self.client.patch_pod(meta.namespace, meta.name, ops, "json")
            except ApiError as exc:
                GATE_API_ERRORS.labels(kind=str(exc.code)).inc()
                if exc.code == 404:
                    self._finish(h, "gone", "deleted while held", now)
                    return False
                if exc.code in (409, 422):  # the gate list changed: re-read and retry
                    if not await self._refresh(h, now):
                        return False
                    continue
                return self._retry_later(h, now, str(exc))
            except KubeError as exc:
                GATE_API_ERRORS.labels(kind="unavailable").inc()
                return self._retry_later(h, now, str(exc))
            h.pod = pod
            GATE_RELEASES.labels(reason=reason).inc()
            GATE_DELAY.inc(max(0.0, now - h.first_seen) / 3600.0)
            self._finish(h, "released", reason, now)
            event_type: Literal["Normal", "Warning"] = (
                "Warning" if reason == "invalid" else "Normal"
            )
            self._spawn_event(h, "CarbonRelease", "Release", note, event_type)
            return True
        return self._retry_later(h, now, "gate list kept changing")

    async def _refresh(self, h: Held, now: float) -> bool:
        meta = h.pod.metadata
        try:
            h.pod = await self.client.get_pod(meta.namespace, meta.name)
        except ApiError as exc:
            if exc.code == 404:
                self._finish(h, "gone", "deleted while held", now)
                return False
            return self._retry_later(h, now, str(exc))
        except KubeError as exc:
            return self._retry_later(h, now, str(exc))
        if h.pod.metadata.uid != h.uid:
            self._finish(h, "gone", "deleted and re-created under the same name", now)
            return False
        return True

    def _retry_later(self, h: Held, now: float, why: str) -> bool:
        h.attempts += 1
        backoff = Backoff(base=1.0, cap=60.0, attempts=h.attempts - 1)
        h.retry_at = now + backoff.next_delay()
        log.warning("gate_release_retry", pod=h.key, error=why, attempt=h.attempts)
        return False

    def _finish(
        self,
        h: Held,
        outcome: Literal["released", "gone", "released-by-other"],
        reason: str,
        now: float | None = None,
    ) -> None:
        at = self.clock() if now is None else now
        self.held.pop(h.uid, None)
        self._done[h.uid] = at
        if len(self._done) > 100_000:  # bounded memory: forget the oldest
            for uid in list(self._done)[:10_000]:
                del self._done[uid]
        self.outcomes.append(Outcome(h.uid, h.key, outcome, reason, at, h.planned))
        log.info("gate_" + outcome.replace("-", "_"), pod=h.key, reason=reason, planned=h.planned)
        self._record(h, outcome, reason, at)

    def _record(self, h: Held, outcome: str, reason: str, at: float) -> None:
        if self.ledger is None:
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
            self.ledger.append(record)
        except Exception as exc:  # the ledger must never stop a release
            log.warning("gate_ledger_failed", pod=h.key, error=str(exc))

    # -- events and metrics --

    def _spawn_event(
        self,
        h: Held,
        reason: str,
        action: str,
        note: str,
        type_: EventType = "Normal",
    ) -> None:
        if self.dry_run:
            log.info("gate_event", pod=h.key, reason=reason, note=note)
            return
        task = asyncio.get_running_loop().create_task(
            self._event(h.pod, reason, action, note, type_)
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _event(
        self,
        pod: wire.Pod,
        reason: str,
        action: str,
        note: str,
        type_: Literal["Normal", "Warning"],
    ) -> None:
        try:
            async with self._event_slots:  # thousands of holds must not flood the API server
                await self._post_event(pod, reason, action, note, type_)
        except KubeError as exc:
            GATE_API_ERRORS.labels(kind="event").inc()
            log.warning("gate_event_failed", pod=pod.key, error=str(exc))

    async def _post_event(
        self, pod: wire.Pod, reason: str, action: str, note: str, type_: EventType
    ) -> None:
        await self.client.create_event(
            pod,
            reason=reason,
            note=note,
            action=action,
            type_=type_,
            controller=GATE_CONTROLLER,
            instance="lowcarb-gates",
        )

    async def drain_events(self) -> None:
        """Wait for the Events already being posted (tests, shutdown)."""
        while self._events:
            await asyncio.gather(*list(self._events), return_exceptions=True)

    def _export_metrics(self, now: float) -> None:
        held = [h for h in self.held.values() if h.planned is not None and not h.releasing]
        GATE_HELD.set(len(held))
        GATE_PLANNED_DELAY.set(sum(max(0.0, (h.planned or now) - now) for h in held) / 3600.0)
        savings = [
            1.0 - (h.mean_at or 0.0) / h.mean_now for h in held if h.mean_now and h.mean_now > 0
        ]
        GATE_EXPECTED_SAVING.set(float(np.mean(savings)) if savings else 0.0)

    # -- lifecycle --

    async def start(self, *, page_size: int = 500) -> None:
        """Watch unbound pods and run the planning loop until :meth:`stop`."""
        reflector = pod_reflector(self.client, _GateHandler(self), UNASSIGNED, page_size=page_size)
        self.reflector = reflector
        self.started_at = self.clock()
        self._tasks = [
            asyncio.create_task(reflector.run(), name="lowcarb-gates-watch"),
            asyncio.create_task(self._loop(), name="lowcarb-gates-plan"),
        ]

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in one pass must not stop the controller
                log.exception("gate_pass_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_s)
            self._wake.clear()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await self.drain_events()


# --- policy glue --------------------------------------------------------------------------------


def policy_rules(
    policy: Callable[[], Any],
    zones_for: Callable[[wire.Pod, Any], Iterable[str]],
    *,
    ttl_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> RulesFor:
    """Rules from the current policy: the pod's class ``temporalShift`` and allowed zones.

    Memoised per pod (uid, resourceVersion, policy object) for ``ttl_s`` so that a re-plan of
    thousands of pods does not classify each one again (zones follow node changes within ttl).
    """
    from scheduler.policy.classes import classify

    memo: dict[str, tuple[str, int, float, ShiftRules]] = {}

    def compute(pod: wire.Pod, current: Any) -> ShiftRules:
        choice = classify(current, pod)
        shift = choice.workload_class.temporalShift
        zones = tuple(zones_for(pod, choice.workload_class))
        if shift is None:  # the pod opted in by its gate; the class sets no limits
            return ShiftRules(default_duration_s=choice.duration_s, zones=zones)
        return ShiftRules(
            enabled=shift.enabled,
            max_delay_s=shift.max_delay_s,
            min_saving=float(shift.minSaving),
            default_duration_s=choice.duration_s,
            zones=zones,
        )

    def rules(pod: wire.Pod) -> ShiftRules:
        current = policy()
        now = clock()
        uid, rv = pod.metadata.uid, pod.metadata.resourceVersion
        hit = memo.get(uid)
        if hit is not None and hit[0] == rv and hit[1] == id(current) and hit[2] > now:
            return hit[3]
        result = compute(pod, current)
        if len(memo) > 200_000:
            memo.clear()
        memo[uid] = (rv, id(current), now + ttl_s, result)
        return result

    return rules


def zones_from_state(
    state: Any, *, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
) -> Callable[[wire.Pod, Any], list[str]]:
    """Zones of the known nodes that could run the pod (GPU count and model), within the class's
    allowed zones. The node table is read at most once per ``ttl_s``; answers are memoised per
    (GPUs, models, class constraints) in between."""
    from scheduler.demand import DemandError, parse_demand

    cached: dict[str, Any] = {"at": float("-inf"), "table": None, "memo": {}}

    def zones(pod: wire.Pod, workload_class: Any) -> list[str]:
        now = clock()
        if now - cached["at"] > ttl_s:
            cached.update(at=now, table=state.full_table(), memo={})
        table = cached["table"]
        try:
            demand = parse_demand(pod)
        except DemandError:
            return []
        constraints = getattr(workload_class, "constraints", None)
        key = (demand.gpus, demand.models, id(constraints))
        memo: dict[Any, list[str]] = cached["memo"]
        if key in memo:
            return memo[key]
        fits = np.asarray(table.gpu_total) >= demand.gpus
        if demand.models:
            wanted = [i for i, m in enumerate(table.models) if m in demand.models]
            fits &= np.isin(table.gpu_model, wanted)
        found = {table.zones[z] for z in np.asarray(table.zone)[fits].tolist() if z >= 0}
        if constraints is not None:
            found = {z for z in found if constraints.zone_allowed(z)}
        memo[key] = sorted(found)
        return memo[key]

    return zones


def controller_for(
    client: KubeClient,
    policy: Callable[[], Any],
    cache: Any,
    state: Any,
    *,
    ledger: GateLedger | None = None,
    settings: GateSettings | None = None,
    dry_run: bool = False,
) -> GateController:
    """The controller as ``lowcarb serve`` (cluster mode) and ``lowcarb gates run`` build it.

    ``cache`` is the ``CarbonCache`` (``view()``, ``track()``), ``state`` the synced
    ``ClusterState`` whose nodes decide which zones a pod may run in.
    """
    return GateController(
        client,
        cache.view,
        policy_rules(policy, zones_from_state(state)),
        settings=settings or GateSettings(),
        ledger=ledger,
        dry_run=dry_run,
        ready=lambda: bool(state.synced),
        track_zones=cache.track,
    )
