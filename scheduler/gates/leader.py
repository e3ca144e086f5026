"""Leader election on a coordination.k8s.io/v1 Lease: exactly one gate controller at a time.

Every replica is a candidate with a unique ``holderIdentity`` (host name, which is the pod name,
plus a random suffix). A candidate reads the Lease; it creates it when there is none (a lost
create race answers 409 AlreadyExists), and it takes it over only when the holder has not renewed
it for ``leaseDurationSeconds`` *as measured on the candidate's own monotonic clock* from the
moment it last saw the record change, so clock skew between nodes does not matter. Every write is
a PUT of the object it read, with that ``resourceVersion``: a concurrent writer makes the API
server answer 409 Conflict and the loser stays a follower. Leases refuse an update without a
``resourceVersion`` (422), so no write can be unconditional.

The leader renews every ``retry_period_s``; when it has not renewed for ``renew_deadline_s`` (API
unreachable, a stalled process) or sees another holder, it stops leading at once, before the
Lease (``lease_duration_s`` > ``renew_deadline_s``) can expire for the others. A follower polls
every ``retry_period_s`` (+ up to 20 % jitter), so a standby leads within the lease duration plus
about two poll periods after the leader died. On a clean shutdown the leader stops its work
first, then releases the Lease (no holder, 1 s), so the standby takes over on its next poll.

:class:`LeaderOnly` runs a service (the gate controller, built fresh for every term so no stale
state carries over) only while this process leads. The Lease's API calls are in
:mod:`scheduler.gates.lease`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from carbon.aio import cancel_all
from carbon.clock import wall
from scheduler.gates.lease import Lease, LeaseLock, LeaseSpec
from scheduler.gates.metrics import GATE_LEADER, GATE_LEADER_CHANGES
from scheduler.kube import ApiError, KubeClient, KubeError, micro_time

log = structlog.get_logger("lowcarb.gates.leader")

DEFAULT_LEASE = "lowcarb-gates"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JITTER = 0.2  # a follower waits retry_period_s x (1 .. 1.2) between polls


def default_identity() -> str:
    """``<host name>_<random>``: the pod name in a cluster, unique per process everywhere."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


def default_namespace() -> str:
    """``POD_NAMESPACE``, else the service account's namespace (in a pod), else ``default``."""
    env = os.environ.get("POD_NAMESPACE", "").strip()
    if env:
        return env
    with contextlib.suppress(OSError):
        text = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if text:
            return text
    return "default"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Which Lease, who we are, and its timing (client-go's names and defaults: 15 s/10 s/2 s)."""

    namespace: str
    name: str = DEFAULT_LEASE
    identity: str = field(default_factory=default_identity)
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why these settings cannot elect safely (None when they can)."""
        if not self.namespace or not self.name or not self.identity:
            return "the Lease needs a namespace, a name and a holder identity"
        if self.lease_duration_s < 1:
            return f"the lease duration must be at least 1 s, got {self.lease_duration_s:g} s"
        if self.retry_period_s <= 0:
            return f"the retry period must be above 0 s, got {self.retry_period_s:g} s"
        if self.renew_deadline_s >= self.lease_duration_s:
            return (
                f"the renew deadline ({self.renew_deadline_s:g} s) must be shorter than the "
                f"lease duration ({self.lease_duration_s:g} s), or two leaders could overlap"
            )
        if self.renew_deadline_s <= self.retry_period_s * (1 + JITTER):
            return (
                f"the renew deadline ({self.renew_deadline_s:g} s) must exceed the retry period "
                f"x {1 + JITTER:g} ({self.retry_period_s * (1 + JITTER):g} s)"
            )
        return None

    @classmethod
    def scaled(cls, namespace: str, name: str, lease_duration_s: float) -> LeaseSettings:
        """Settings from one number, in client-go's default proportions (15:10:2)."""
        return cls(
            namespace=namespace,
            name=name,
            lease_duration_s=lease_duration_s,
            renew_deadline_s=lease_duration_s * 2 / 3,
            retry_period_s=lease_duration_s * 2 / 15,
        )


# --- the election ---------------------------------------------------------------------------


class Attempt(Enum):
    """What one try to acquire or renew found."""

    LEADING = "leading"  # we hold the Lease (created, renewed or taken over)
    FOLLOWING = "following"  # another holder's Lease is still valid
    UNKNOWN = "unknown"  # the API failed or another candidate wrote first: try again


class LeaderElector:
    """Acquires, renews and releases the Lease; see the module docstring."""

    def __init__(
        self,
        lock: LeaseLock,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = wall,
    ) -> None:
        self.lock = lock
        self.settings = settings
        self.clock = clock  # expiry: monotonic, local
        self.now = now  # acquireTime/renewTime written into the Lease (for people and tools)
        self.leading = False
        self.observed: Lease | None = None
        self.observed_at = float("-inf")

    @property
    def identity(self) -> str:
        return self.settings.identity

    def _stamp(self) -> str:
        return micro_time(datetime.fromtimestamp(self.now(), UTC))

    def _observe(self, lease: Lease) -> None:
        if self.observed is None or lease.spec != self.observed.spec:
            self.observed_at = self.clock()
        self.observed = lease

    async def try_acquire_or_renew(self) -> Attempt:
        """One round: read the Lease, then create, renew or take it over if we may."""
        timeout = self.settings.renew_deadline_s / 2
        duration = math.ceil(self.settings.lease_duration_s)
        try:
            lease = await self.lock.get(timeout)
            if lease is None:
                stamp = self._stamp()
                spec = LeaseSpec(self.identity, duration, stamp, stamp, 0)
                self._observe(await self.lock.create(spec, timeout))
                return Attempt.LEADING
            self._observe(lease)
            held = lease.spec
            mine = held.holderIdentity == self.identity
            valid_for = held.leaseDurationSeconds or duration
            if held.holderIdentity and not mine and self.clock() < self.observed_at + valid_for:
                return Attempt.FOLLOWING
            stamp = self._stamp()
            transitions = held.leaseTransitions or 0
            if mine:
                spec = LeaseSpec(self.identity, duration, held.acquireTime, stamp, transitions)
            else:
                spec = LeaseSpec(self.identity, duration, stamp, stamp, transitions + 1)
            self._observe(await self.lock.update(lease, spec, timeout))
            return Attempt.LEADING
        except ApiError as exc:
            if exc.code == 409:  # another candidate created or updated it first
                log.debug("lease_conflict", lease=self.lock.name, reason=exc.reason)
            else:
                log.warning("lease_failed", lease=self.lock.name, error=str(exc))
            return Attempt.UNKNOWN
        except (KubeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("lease_failed", lease=self.lock.name, error=str(exc))
            return Attempt.UNKNOWN

    async def acquire(self) -> None:
        """Return once we hold the Lease (polling every retry period, with jitter)."""
        while await self.try_acquire_or_renew() is not Attempt.LEADING:
            await asyncio.sleep(self.settings.retry_period_s * (1 + random.random() * JITTER))

    async def keep(self) -> None:
        """Renew every retry period; return when leadership is lost (deadline or other holder)."""
        renewed = self.clock()
        while True:
            await asyncio.sleep(self.settings.retry_period_s)
            while True:
                left = renewed + self.settings.renew_deadline_s - self.clock()
                if left <= 0:
                    log.warning("lease_renew_deadline_passed", lease=self.lock.name)
                    return
                try:
                    async with asyncio.timeout(left):
                        attempt = await self.try_acquire_or_renew()
                except TimeoutError:
                    log.warning("lease_renew_deadline_passed", lease=self.lock.name)
                    return
                if attempt is Attempt.LEADING:
                    renewed = self.clock()
                    break
                if attempt is Attempt.FOLLOWING:
                    holder = self.observed.spec.holderIdentity if self.observed else None
                    log.warning("lease_taken_by_other", lease=self.lock.name, holder=holder)
                    return
                await asyncio.sleep(min(self.settings.retry_period_s, max(left / 2, 0.01)))

    async def release(self) -> None:
        """Step down: no holder, 1 s duration, so a standby takes over on its next poll."""
        read = self.observed
        for _ in range(2):  # a renewal cut short by shutdown may have landed: re-read once
            if read is None or read.spec.holderIdentity != self.identity:
                return
            stamp = self._stamp()
            spec = LeaseSpec(None, 1, stamp, stamp, read.spec.leaseTransitions or 0)
            timeout = self.settings.renew_deadline_s
            try:
                self.observed = await self.lock.update(read, spec, timeout)
                log.info("lease_released", lease=self.lock.name, identity=self.identity)
                return
            except ApiError as exc:
                if exc.code != 409:
                    log.warning("lease_release_failed", lease=self.lock.name, error=str(exc))
                    return
                try:
                    read = await self.lock.get(timeout)
                except KubeError as again:
                    log.warning("lease_release_failed", lease=self.lock.name, error=str(again))
                    return
            except KubeError as exc:  # it will expire by itself
                log.warning("lease_release_failed", lease=self.lock.name, error=str(exc))
                return

    async def run(
        self,
        started: Callable[[], Awaitable[None]],
        stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Forever: wait to lead, call ``started``, renew until lost, call ``stopped``."""
        while True:
            await self.acquire()
            self.set_leading(True)
            try:
                await started()
            except Exception as exc:  # a service that cannot start must not keep the Lease
                log.exception("leader_start_failed", error=str(exc))
                self.set_leading(False)
                await stopped()
                await self.release()
                await asyncio.sleep(self.settings.retry_period_s)
                continue
            await self.keep()
            self.set_leading(False)
            await stopped()

    def set_leading(self, leading: bool) -> None:
        """Record (log, metrics) that this process now leads or no longer does."""
        if leading == self.leading:
            return
        self.leading = leading
        GATE_LEADER.set(1 if leading else 0)
        GATE_LEADER_CHANGES.labels(event="acquired" if leading else "lost").inc()
        event = "lease_acquired" if leading else "lease_lost"
        log.info(event, lease=f"{self.lock.namespace}/{self.lock.name}", identity=self.identity)


class Service(Protocol):
    """What :class:`LeaderOnly` runs: ``GateController`` fits."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class LeaderOnly:
    """Runs a service, built fresh by ``make`` for every term, only while this process leads.

    ``start``/``stop`` look like the service's own, so callers swap one for the other. ``stop``
    stops the service first and only then releases the Lease: no two services ever overlap.
    """

    def __init__(self, make: Callable[[], Service], elector: LeaderElector) -> None:
        self.make = make
        self.elector = elector
        self.current: Service | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.elector.leading

    async def start(self) -> None:
        run = self.elector.run(self._started, self._stopped)
        self._task = asyncio.create_task(run, name="lowcarb-gates-leader")

    async def _started(self) -> None:
        self.current = self.make()
        await self.current.start()

    async def _stopped(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            await current.stop()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
        await self._stopped()
        if self.elector.leading:
            self.elector.set_leading(False)
        await self.elector.release()


def leader_only(
    make: Callable[[], Service], client: KubeClient, settings: LeaseSettings
) -> LeaderOnly:
    """``make()``'s service, run only while this process holds the Lease of ``settings``."""
    lock = LeaseLock(client, settings.namespace, settings.name)
    return LeaderOnly(make, LeaderElector(lock, settings))
