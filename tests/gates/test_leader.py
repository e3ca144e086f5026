"""Leader election on a Lease against the fake API server: races, renewals, expiry, hand-over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from scheduler.gates.leader import Attempt, LeaderElector, LeaderOnly, LeaseSettings, leader_only
from scheduler.gates.lease import LEASE_PERMISSIONS, Lease, LeaseLock
from scheduler.kube import client as kube
from tests.support.fakeapi import FakeApiServer, LeaseStore, fixture, rbac_checked

NS = "lowcarb-system"
NAME = "lowcarb-gates"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked(LEASE_PERMISSIONS) as server:
        yield server


@pytest.fixture
def leases(api: FakeApiServer) -> LeaseStore:
    return LeaseStore(api, NS).install(NAME)


@pytest.fixture
async def client(api: FakeApiServer) -> AsyncIterator[kube.KubeClient]:
    made = kube.KubeClient(kube.KubeConfig(host=api.url, token="t"))
    yield made
    await made.aclose()


def elector(
    client: kube.KubeClient, who: str, clock: Callable[[], float] | None = None, **timing: float
) -> LeaderElector:
    settings = LeaseSettings(NS, NAME, who, **timing)
    lock = LeaseLock(client, NS, NAME)
    return (
        LeaderElector(lock, settings)
        if clock is None
        else LeaderElector(lock, settings, clock=clock)
    )


# --- the fake store answers as the recorded kube-apiserver did ------------------------------------


def test_lease_store_answers_with_the_recorded_bodies(
    api: FakeApiServer, leases: LeaseStore
) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    json_body = {"Content-Type": "application/json"}
    with httpx.Client(base_url=api.url) as http:
        missing = http.get(f"{path}/{NAME}")
        assert (missing.status_code, missing.content) == (404, fixture("lease-get-not-found.json"))
        sent = fixture("lease-create.request.json")
        created = http.post(path, content=sent, headers=json_body)
        assert created.status_code == 201
        recorded = json.loads(fixture("lease-create.json"))
        assert list(created.json()) == list(recorded)  # kind, apiVersion, metadata, spec
        assert list(created.json()["spec"].items()) == list(recorded["spec"].items())
        again = http.post(path, content=sent, headers=json_body)
        assert (again.status_code, again.content) == (
            409,
            fixture("lease-create-already-exists.json"),
        )
        read = http.get(f"{path}/{NAME}").json()
        read["spec"]["renewTime"] = "2026-11-28T12:00:02.000000Z"
        renewed = http.put(f"{path}/{NAME}", json=read)
        assert renewed.status_code == 200
        assert renewed.json()["spec"]["renewTime"] == "2026-11-28T12:00:02.000000Z"
        assert renewed.json()["metadata"]["uid"] == read["metadata"]["uid"]
        stale = http.put(f"{path}/{NAME}", json=read)  # still the old resourceVersion
        assert (stale.status_code, stale.content) == (409, fixture("lease-update-stale-rv.json"))
        del read["metadata"]["resourceVersion"]
        unconditional = http.put(f"{path}/{NAME}", json=read)
        assert (unconditional.status_code, unconditional.content) == (
            422,
            fixture("lease-update-no-rv.json"),
        )
    assert [w.verb for w in leases.writes] == ["create", "update"]


# --- one election round at a time ---------------------------------------------------------------


async def test_first_candidate_creates_the_lease_and_the_next_follows(
    client: kube.KubeClient, leases: LeaseStore
) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    assert await a.try_acquire_or_renew() is Attempt.LEADING
    assert await b.try_acquire_or_renew() is Attempt.FOLLOWING
    lease = leases.leases[NAME]["spec"]
    assert lease["holderIdentity"] == "a"
    assert lease["leaseDurationSeconds"] == 15 and lease["leaseTransitions"] == 0
    assert lease["acquireTime"] == lease["renewTime"]
    assert [(w.verb, w.holder) for w in leases.writes] == [("create", "a")]


async def test_simultaneous_candidates_elect_exactly_one(
    api: FakeApiServer, client: kube.KubeClient, leases: LeaseStore
) -> None:
    candidates = [elector(client, f"c{i}") for i in range(4)]
    results = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    assert results.count(Attempt.LEADING) == 1
    (winner,) = [c for c, r in zip(candidates, results, strict=True) if r is Attempt.LEADING]
    assert leases.holder(NAME) == winner.identity
    assert len(leases.writes) == 1
    # the others lost the create race (409 AlreadyExists) or read the winner's Lease
    for c, r in zip(candidates, results, strict=True):
        if c is not winner:
            assert r in (Attempt.UNKNOWN, Attempt.FOLLOWING)
            assert await c.try_acquire_or_renew() is Attempt.FOLLOWING


async def test_renewal_keeps_acquire_time_and_checks_the_resource_version(
    api: FakeApiServer, client: kube.KubeClient, leases: LeaseStore
) -> None:
    now = [1_800_000_000.0]
    a = elector(client, "a")
    a.now = lambda: now[0]
    assert await a.try_acquire_or_renew() is Attempt.LEADING
    first = dict(leases.leases[NAME]["spec"])
    rv = leases.writes[-1].resource_version
    now[0] += 2
    assert await a.try_acquire_or_renew() is Attempt.LEADING
    spec = leases.leases[NAME]["spec"]
    assert spec["acquireTime"] == first["acquireTime"] == "2027-01-15T08:00:00.000000Z"
    assert spec["renewTime"] == "2027-01-15T08:00:02.000000Z"
    assert spec["leaseTransitions"] == 0
    (put,) = api.seen("PUT")
    assert put.json()["metadata"]["resourceVersion"] == rv  # the version it read


async def test_standby_takes_over_only_after_the_lease_ran_out(
    client: kube.KubeClient, leases: LeaseStore
) -> None:
    t = [0.0]
    a, b = elector(client, "a", clock=lambda: t[0]), elector(client, "b", clock=lambda: t[0])
    assert await a.try_acquire_or_renew() is Attempt.LEADING
    assert await b.try_acquire_or_renew() is Attempt.FOLLOWING  # b sees the record at t=0
    t[0] = 10.0
    assert await a.try_acquire_or_renew() is Attempt.LEADING  # a renews at t=10 ...
    assert await b.try_acquire_or_renew() is Attempt.FOLLOWING  # ... b sees the change at once
    t[0] = 24.9  # b's own clock: just under 15 s since the record last changed
    assert await b.try_acquire_or_renew() is Attempt.FOLLOWING
    t[0] = 25.1  # a has been silent for the whole lease duration
    assert await b.try_acquire_or_renew() is Attempt.LEADING
    spec = leases.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # the old leader finds out on its next round and follows
    assert await a.try_acquire_or_renew() is Attempt.FOLLOWING


async def test_a_write_that_lost_the_race_gets_409_and_changes_nothing(
    api: FakeApiServer, client: kube.KubeClient, leases: LeaseStore
) -> None:
    t = [0.0]
    a = elector(client, "a", clock=lambda: t[0])
    b = elector(client, "b", clock=lambda: t[0])
    assert await a.try_acquire_or_renew() is Attempt.LEADING
    assert await b.try_acquire_or_renew() is Attempt.FOLLOWING
    t[0] = 20.0  # expired in b's eyes ...

    class Racing(LeaseLock):
        async def get(self, timeout: float | None = None) -> Lease | None:
            read = await super().get(timeout)
            assert await a.try_acquire_or_renew() is Attempt.LEADING  # ... but a renews now
            return read

    b.lock = Racing(client, NS, NAME)
    assert await b.try_acquire_or_renew() is Attempt.UNKNOWN
    assert leases.holder(NAME) == "a"
    assert [r.method for r in api.requests][-2:] == ["PUT", "PUT"]  # a's renewal, b's 409


def test_settings_refuse_timings_that_could_overlap_two_leaders() -> None:
    with pytest.raises(ValueError, match=r"renew deadline \(15 s\) must be shorter than the lease"):
        LeaseSettings(NS, NAME, "x", lease_duration_s=15, renew_deadline_s=15)
    with pytest.raises(ValueError, match=r"must exceed the retry period"):
        LeaseSettings(NS, NAME, "x", lease_duration_s=15, renew_deadline_s=2, retry_period_s=2)
    with pytest.raises(ValueError, match="at least 1 s"):
        LeaseSettings.scaled(NS, NAME, 0.5)
    scaled = LeaseSettings.scaled(NS, NAME, 15)
    assert (scaled.renew_deadline_s, scaled.retry_period_s) == (10, 2)
    assert scaled.identity and scaled.identity != LeaseSettings.scaled(NS, NAME, 15).identity


# --- the service runs only while leading --------------------------------------------------------


@dataclass
class Probe:
    """A service recording when it ran (monotonic seconds of the test's event loop)."""

    log: list[tuple[str, str, float]]
    name: str
    fail: bool = False

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("cannot start")
        self.log.append((self.name, "start", asyncio.get_running_loop().time()))

    async def stop(self) -> None:
        self.log.append((self.name, "stop", asyncio.get_running_loop().time()))


@dataclass
class Replica:
    runner: LeaderOnly
    log: list[tuple[str, str, float]] = field(default_factory=list)


FAST = {"lease_duration_s": 1.5, "renew_deadline_s": 1.0, "retry_period_s": 0.2}


def replica(client: kube.KubeClient, who: str, log: list[tuple[str, str, float]]) -> LeaderOnly:
    settings = LeaseSettings(NS, NAME, who, **FAST)
    return leader_only(lambda: Probe(log, who), client, settings)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_leader_that_cannot_renew_stops_before_its_lease_can_expire(
    api: FakeApiServer, client: kube.KubeClient, leases: LeaseStore
) -> None:
    log: list[tuple[str, str, float]] = []
    a = replica(client, "a", log)
    await a.start()
    try:
        await until(lambda: a.leading and len(leases.writes) >= 3)  # created, renewed twice
        api.outage = True
        await until(lambda: any(e[1] == "stop" for e in log))
    finally:
        api.outage = False
        await a.stop()
    stopped = next(at for _, what, at in log if what == "stop")
    last_renewal = leases.writes[-1].at  # time.monotonic(): the loop's clock on Linux
    assert stopped - last_renewal <= FAST["renew_deadline_s"] + 0.5
    assert stopped < last_renewal + FAST["lease_duration_s"]  # before anyone else may lead
    assert not a.leading


async def test_clean_stop_stops_the_service_then_hands_the_lease_over(
    client: kube.KubeClient, leases: LeaseStore
) -> None:
    log: list[tuple[str, str, float]] = []
    a, b = replica(client, "a", log), replica(client, "b", log)
    await a.start()
    await until(lambda: a.leading)
    await b.start()
    try:
        await asyncio.sleep(0.5)
        assert not b.leading and [e[:2] for e in log] == [("a", "start")]
        await a.stop()
        (released,) = [w for w in leases.writes if w.holder is None]
        assert released.transitions == 0
        a_stopped = next(at for who, what, at in log if (who, what) == ("a", "stop"))
        assert a_stopped <= released.at  # the service stopped before the Lease was let go
        await until(lambda: b.leading, timeout=FAST["retry_period_s"] * 1.2 + 1.0)
        taken = leases.writes[-1]
        assert (taken.holder, taken.transitions) == ("b", 1)
        # b took over on its next poll (retry period), without waiting out even the 1 s
        # duration the released Lease declares
        assert taken.at - released.at < 1.0
    finally:
        await b.stop()
    assert [e[:2] for e in log] == [("a", "start"), ("a", "stop"), ("b", "start"), ("b", "stop")]


async def test_a_service_that_fails_to_start_gives_the_lease_back(
    client: kube.KubeClient, leases: LeaseStore
) -> None:
    log: list[tuple[str, str, float]] = []
    attempts: list[int] = []

    def make() -> Probe:
        attempts.append(1)
        return Probe(log, "a", fail=len(attempts) == 1)

    runner = leader_only(make, client, LeaseSettings(NS, NAME, "a", **FAST))
    await runner.start()
    try:
        await until(lambda: [e[1] for e in log] == ["stop", "start"])
    finally:
        await runner.stop()
    assert [w.holder for w in leases.writes[:2]] == ["a", None]  # acquired, released on failure
    assert leases.writes[2].holder == "a"
