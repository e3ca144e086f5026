"""Pods in flight: past their scheduling cycle, their bind not arrived yet.

kube-scheduler schedules one pod at a time (``schedule_one.go``: the scheduling cycle is serial)
and binds in the background: it assumes pod A on the node it chose, starts A's binding cycle in
a goroutine (WaitOnPermit, PreBind, then the extender's bind) and at once runs the next pod's
cycle. Pod B's filter can therefore reach lowcarb before A's bind, while lowcarb's GPU slots do
not hold A yet. Whole GPUs, CPU and memory are safe all the same (kube-scheduler's own
NodeResourcesFit counts A from its cache of assumed pods), but only lowcarb knows how much of each
shared (fractional) GPU is taken: B could get a slot A fills.

:class:`InFlight` remembers every GPU pod lowcarb passed at filter (refreshed at prioritize) with
the nodes it may land on, until its bind arrives (or the pod watch shows it bound, when
kube-scheduler binds by itself). The filter or prioritize of a pod that shares a GPU, whose
candidates include a node an in-flight pod may land on, first waits for those binds (asyncio):
at most ``wait_s`` after the in-flight pod's last verb, so a pod that never binds (rejected at
Reserve or Permit, held by a Permit plugin, slow PreBind) delays the pods behind it at most once
and that long, and a wait never blocks the event loop the awaited bind arrives on. Pods that do
not share a GPU, and pods whose candidates no in-flight pod can reach, never wait.
``lowcarb_inflight_waits_total{outcome}`` counts the waits and
``lowcarb_inflight_wait_seconds`` times them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import structlog

from scheduler import metrics
from scheduler.demand import PodDemand

log = structlog.get_logger("lowcarb.inflight")

DEFAULT_WAIT_S = 0.25
_MAX = 4096  # pods remembered at most (oldest first out)
for _outcome in ("bound", "timeout"):  # exported at 0 from the start
    metrics.INFLIGHT_WAITS.labels(_outcome)


@dataclass(slots=True)
class Flight:
    """A pod whose bind lowcarb expects: where it may land, since when, who waits for it."""

    uid: str
    nodes: Collection[str]
    since: float
    bound: asyncio.Future[None] | None = None


class InFlight:
    """The pods in flight, and the bounded wait for their binds (one event loop)."""

    def __init__(
        self, wait_s: float = DEFAULT_WAIT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.wait_s = wait_s
        self.clock = clock
        self._flights: OrderedDict[str, Flight] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flights)

    def begin(self, uid: str) -> None:
        """The pod's own filter: it is in a (new) scheduling cycle, no earlier bind will come."""
        if self._flights:
            self._land(uid)

    def expect(self, demand: PodDemand, nodes: Collection[str]) -> None:
        """The pod passed filter (or was scored) on ``nodes``: its bind may follow on one of them.
        ``nodes`` is kept as given (not copied): callers hand over a list they no longer change."""
        if self.wait_s <= 0 or not demand.uid or not demand.wants_gpu or not nodes:
            return
        flight = self._flights.pop(demand.uid, None)
        if flight is None:
            flight = Flight(demand.uid, nodes, self.clock())
        else:
            flight.nodes, flight.since = nodes, self.clock()
        self._flights[demand.uid] = flight
        while len(self._flights) > _MAX:
            self._wake(self._flights.popitem(last=False)[1])

    def arrived(self, uid: str) -> None:
        """The pod's bind arrived (lowcarb counts it now), or the watch shows it bound."""
        if self._flights:
            self._land(uid)

    def waits(self, demand: PodDemand, names: Collection[str]) -> Awaitable[None] | None:
        """What ``demand``'s filter/prioritize over ``names`` must await first, or None (at once).

        Only a pod that shares a GPU waits, and only for pods still in flight (younger than
        ``wait_s``) that may land on one of ``names``."""
        if not self._flights or not demand.shares_gpu:
            return None
        now = self.clock()
        oldest = now - self.wait_s
        while self._flights:  # the oldest first: drop those past their wait
            first = next(iter(self._flights.values()))
            if first.since > oldest:
                break
            self._wake(self._flights.popitem(last=False)[1])
        candidates: set[str] | None = None
        blocking: list[Flight] = []
        for flight in self._flights.values():
            if flight.uid == demand.uid:
                continue
            if candidates is None:
                candidates = names if isinstance(names, set) else set(names)
            if not candidates.isdisjoint(flight.nodes):
                blocking.append(flight)
        if not blocking:
            return None
        loop = asyncio.get_running_loop()
        for flight in blocking:
            if flight.bound is None:
                flight.bound = loop.create_future()
        deadline = max(f.since for f in blocking) + self.wait_s
        futures = [f.bound for f in blocking if f.bound is not None]
        return self._wait(futures, deadline - now, demand)

    async def _wait(
        self, futures: list[asyncio.Future[None]], timeout: float, demand: PodDemand
    ) -> None:
        started = time.perf_counter()
        _, pending = await asyncio.wait(futures, timeout=max(0.0, timeout))
        took = time.perf_counter() - started
        metrics.INFLIGHT_WAIT_SECONDS.observe(took)
        metrics.INFLIGHT_WAITS.labels("timeout" if pending else "bound").inc()
        if pending:
            log.info(
                "inflight_wait_timeout",
                pod=demand.key,
                waited_ms=round(took * 1000, 1),
                unbound=len(pending),
            )

    def _land(self, uid: str) -> None:
        flight = self._flights.pop(uid, None)
        if flight is not None:
            self._wake(flight)

    @staticmethod
    def _wake(flight: Flight) -> None:
        fut = flight.bound
        if fut is None or fut.done():
            return
        loop = fut.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fut.set_result(None)
        else:  # from another thread (a watch run off the loop): hand it to the loop
            loop.call_soon_threadsafe(_settle, fut)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
