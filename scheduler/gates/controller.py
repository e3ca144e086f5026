"""Gate controller (temporal shifting): hold gated pods until the cleanest hour before deadline.

The controller watches unbound pods (gates cannot be selected server-side, so it filters
client-side), and on every tick re-plans all held pods at once from the carbon cache's forecasts
(:func:`scheduler.gates.planner.plan_batch`, per zone the pod may run in); what each pod asks
comes from :mod:`scheduler.gates.request`, what its class allows from
:mod:`scheduler.gates.rules`. A pod is held only when the expected saving reaches the class's
``temporalShift.minSaving``, and never past its latest safe start. Pods of one Job, JobSet or
PodGroup are released together, at the earliest release time of any member.

Release removes only our gate with a JSON patch whose ``test`` op checks our gate's name at the
index we saw: a concurrent change to the gate list makes the API server answer 422 (never
overwriting someone else's edit); the controller then re-reads the pod and retries, or finds the
gate already gone / the pod deleted and records that instead. A strategic-merge ``$patch: delete``
would also remove ours by name, but guarding it needs a resourceVersion precondition that fails on
every unrelated write (status, labels); the JSON ``test`` guards exactly the entry we remove.
API errors and outages are retried with backoff, so a pod is never stuck and never released
twice. Each decision becomes a Kubernetes Event, a ledger record (:mod:`scheduler.gates.records`)
and Prometheus metrics (:mod:`scheduler.gates.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from carbon.aio import cancel_all
from carbon.backoff import Backoff
from carbon.clock import wall
from carbon.types import CarbonView
from scheduler import wire
from scheduler.gates.metrics import GATE_API_ERRORS, GATE_DELAY, GATE_RELEASES, export_held
from scheduler.gates.planner import BatchPlan, plan_batch
from scheduler.gates.records import (
    EventPoster,
    EventType,
    GateLedger,
    Held,
    Outcome,
    OutcomeKind,
    hold_note,
    planned_release_note,
    write_record,
)
from scheduler.gates.request import (
    GATE,
    Invalid,
    ReleaseReason,
    Request,
    RulesFor,
    ShiftRules,
    clock_text,
    gate_index,
    group_of,
    parse_request,
)
from scheduler.gates.rules import policy_rules, zones_from_state
from scheduler.kube import UNASSIGNED, ApiError, KubeClient, KubeError, pod_reflector

log = structlog.get_logger("lowcarb.gates")


@dataclass(frozen=True, slots=True)
class GateSettings:
    """Timing of the controller loop (tick, margins, grace periods) and its API concurrency."""

    tick_s: float = 30.0
    data_wait_s: float = 2.0  # re-plan this soon while a pod waits for a zone's first fetch
    safety_margin_s: float = 300.0  # release this long before the latest start
    min_hold_s: float = 60.0  # a plan starting sooner than this is "now"
    forecast_grace_s: float = 180.0  # after start, wait this long for forecasts before fail-open
    reannounce_shift_s: float = 1800.0  # a new Event when the plan moves this much
    max_parallel_patches: int = 16


class _GateHandler:
    """Feeds the pod reflector's list and watch events into the controller."""

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
    #: when this controller first asked the carbon cache for each zone: a zone tracked for the
    #: first time gets its own forecast grace, so it is fetched before its pods fail open
    zones_since: dict[str, float] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    released_groups: dict[str, float] = field(default_factory=dict)
    _done: dict[str, float] = field(default_factory=dict)
    reflector: Any = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _awaiting_data: bool = False  # set by a pass that held a pod back for a first fetch
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    events: EventPoster = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventPoster(self.client, dry_run=self.dry_run)

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
                note = f"released at the latest safe start ({clock_text(now, now)})"
                due.append((h, "latest-start", note))
                continue
            if isinstance(req, Invalid):
                due.append((h, req.reason, f"released: {req.message}"))
                continue
            todo.append((h, req, rules))
        if todo:
            if self.track_zones is not None:
                zones = {z for _, _, r in todo for z in r.zones}
                for zone in zones:
                    self.zones_since.setdefault(zone, now)
                self.track_zones(zones)
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
                since = max(
                    [self.started_at, *(self.zones_since.get(z, -math.inf) for z in rules.zones)]
                )
                if now - since < self.settings.forecast_grace_s:
                    self._awaiting_data = True  # re-plan soon: the fetch is under way
                    continue  # just started, or a zone new to the cache: not fetched yet
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
                    note = f"released at the latest safe start ({clock_text(req.latest, now)})"
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
        return hold_note(h, saving, now) if verb == "held" else planned_release_note(h)

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
        self._awaiting_data = False
        due = self.plan(now)
        export_held(self.held.values(), now)
        if not due:
            return 0
        sem = asyncio.Semaphore(self.settings.max_parallel_patches)

        async def one(item: tuple[Held, ReleaseReason, str]) -> bool:
            async with sem:
                return await self._release(*item, now=now)

        results = await asyncio.gather(*(one(d) for d in due))
        export_held(self.held.values(), now)
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
            event_type: EventType = "Warning" if reason == "invalid" else "Normal"
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

    def _finish(self, h: Held, outcome: OutcomeKind, reason: str, now: float | None = None) -> None:
        at = self.clock() if now is None else now
        self.held.pop(h.uid, None)
        self._done[h.uid] = at
        if len(self._done) > 100_000:  # bounded memory: forget the oldest
            for uid in list(self._done)[:10_000]:
                del self._done[uid]
        self.outcomes.append(Outcome(h.uid, h.key, outcome, reason, at, h.planned))
        log.info("gate_" + outcome.replace("-", "_"), pod=h.key, reason=reason, planned=h.planned)
        write_record(self.ledger, h, outcome, reason, at)

    # -- events --

    def _spawn_event(
        self, h: Held, reason: str, action: str, note: str, type_: EventType = "Normal"
    ) -> None:
        self.events.post(h.pod, reason, action, note, type_)

    async def drain_events(self) -> None:
        """Wait for the Events already being posted (tests, shutdown)."""
        await self.events.drain()

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
            wait_s = self.settings.tick_s
            if self._awaiting_data:
                wait_s = min(wait_s, self.settings.data_wait_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await self.drain_events()


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
