"""Gate controller against the fake API server: holds, releases and every failure outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carbon.accounting.ledger import GateRecord, Ledger, open_reader, read_records
from carbon.testing import FixedView
from scheduler import kube, wire
from scheduler.gates.controller import GateController, GateSettings, _GateHandler
from scheduler.gates.planner import plan_batch
from scheduler.gates.request import GATE, ShiftRules, group_of
from scheduler.gates.rules import policy_rules, zones_from_state
from tests.support.fakeapi import FakeApiServer, PodStore, rbac_checked

HOUR = 3600.0
NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
CREATED = "2026-11-28T11:59:00Z"
ZONE = "US-W"


def forecast_view(series: Mapping[str, Sequence[float]], start: float = NOON) -> FixedView:
    """A carbon view over fixed hourly forecasts (what the carbon cache would serve)."""
    return FixedView.of_forecasts(series, start_s=start)


# dirty for 2 h, clean from 14:00 to 16:00, dirty again
DIP = [310, 310, 118, 118, 300, 300, 300, 300, 300, 300, 300, 300] * 2


@dataclass
class Env:
    api: FakeApiServer
    store: PodStore
    client: kube.KubeClient
    now: list[float]
    view: FixedView
    made: list[GateController] = field(default_factory=list)

    def controller(self, min_saving: float = 0.1, **kw: Any) -> GateController:
        def rules(pod: wire.Pod) -> ShiftRules:
            return ShiftRules(min_saving=min_saving, zones=(ZONE,))

        ctl = GateController(self.client, lambda: self.view, rules, clock=lambda: self.now[0], **kw)
        self.made.append(ctl)
        return ctl


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked() as server:  # every call covered by the RBAC deploy/ ships
        yield server


@pytest.fixture
async def env(api: FakeApiServer) -> AsyncIterator[Env]:
    store = PodStore(api).install()
    client = kube.KubeClient(kube.KubeConfig(host=api.url, token="t"))
    made = Env(api, store, client, [NOON], forecast_view({ZONE: DIP}))
    yield made
    for ctl in made.made:  # Events still being posted finish before the loop closes
        await ctl.drain_events()
    await client.aclose()


def gated(env: Env, name: str, deadline: str = "12h", duration: str = "2h", **kw: Any) -> None:
    ann = {"lowcarb.dev/deadline": deadline, "lowcarb.dev/expected-duration": duration}
    env.store.add_pod(name, annotations=ann, created=CREATED, **kw)


async def sync(ctl: GateController) -> None:
    """One list through the real API path (what the reflector does on start and on 410)."""
    reflector = kube.pod_reflector(ctl.client, _GateHandler(ctl), kube.UNASSIGNED)
    await reflector.relist()


def patches(env: Env) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in env.api.seen("PATCH")]


async def test_holds_until_the_clean_hour_then_releases_only_our_gate(env: Env) -> None:
    gated(env, "gated-train")
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 0
    await ctl.drain_events()
    held = ctl.held["uid-gated-train"]
    assert held.planned == NOON + 2 * HOUR
    [event] = env.store.created_events
    assert event["note"] == "held until 14:00Z: forecast 118 vs 310 gCO2e/kWh now, -62%"
    assert event["reason"] == "CarbonHold" and event["action"] == "Hold"
    assert event["regarding"]["uid"] == "uid-gated-train"
    assert patches(env) == []
    # still held one hour later; the plan is unchanged so no second Event
    env.now[0] = NOON + HOUR
    assert await ctl.run_once() == 0
    await ctl.drain_events()
    assert len(env.store.created_events) == 1
    env.now[0] = NOON + 2 * HOUR
    assert await ctl.run_once() == 1
    await ctl.drain_events()
    assert env.store.gates("gated-train") == ["other.example/gate"]
    [patch] = env.api.seen("PATCH")
    assert patch.content_type == "application/json-patch+json"
    assert patch.json() == [
        {"op": "test", "path": "/spec/schedulingGates/0/name", "value": GATE},
        {"op": "remove", "path": "/spec/schedulingGates/0"},
    ]
    release = env.store.created_events[-1]
    assert release["reason"] == "CarbonRelease" and "planned cleaner hour" in release["note"]
    assert [o.outcome for o in ctl.outcomes] == ["released"]
    # the watch echo of our own patch does not release twice
    await sync(ctl)
    assert await ctl.run_once(NOON + 3 * HOUR) == 0
    assert len(env.api.seen("PATCH")) == 1


async def test_our_gate_at_another_index_is_found_by_name(env: Env) -> None:
    gated(env, "second", gates=["other.example/gate", GATE])
    env.view = forecast_view({ZONE: [300.0] * 24})  # no cleaner hour: release at once
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 1
    assert env.store.gates("second") == ["other.example/gate"]
    assert env.api.seen("PATCH")[0].json()[0]["path"] == "/spec/schedulingGates/1/name"
    assert ctl.outcomes[0].reason == "no-saving"


@pytest.mark.parametrize(
    ("deadline", "duration", "reason", "text"),
    [
        ("tomorrow-ish", "2h", "invalid", "neither an RFC 3339 time"),
        ("2h", "banana", "invalid", "lowcarb.dev/expected-duration"),
        ("2026-11-28T11:00:00Z", "2h", "deadline-passed", "has already passed"),
        ("2026-11-28T13:00:00Z", "2h", "too-long", "does not fit before the deadline"),
        ("30s", "1h", "deadline-passed", "has already passed"),
    ],
)
async def test_unusable_annotations_release_at_once_with_a_reason(
    env: Env, deadline: str, duration: str, reason: str, text: str
) -> None:
    gated(env, "bad", deadline=deadline, duration=duration)
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 1
    await ctl.drain_events()
    assert env.store.gates("bad") == ["other.example/gate"]
    [event] = env.store.created_events
    assert text in event["note"]
    assert event["type"] == ("Warning" if reason == "invalid" else "Normal")
    assert ctl.outcomes[0].reason == reason


async def test_no_forecast_fails_open(env: Env) -> None:
    gated(env, "blind")
    env.view = forecast_view({})
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 1
    await ctl.drain_events()
    assert "no forecast for zones [US-W] (fail-open)" in env.store.created_events[0]["note"]
    assert ctl.outcomes[0].reason == "no-forecast"


async def test_small_saving_below_min_saving_is_not_held(env: Env) -> None:
    gated(env, "meh")
    env.view = forecast_view({ZONE: [310, 310, 290, 290] + [310] * 20})  # at most -6%
    ctl = env.controller(min_saving=0.2)
    await sync(ctl)
    assert await ctl.run_once() == 1
    await ctl.drain_events()
    assert "minSaving 20%" in env.store.created_events[0]["note"]


async def test_released_by_the_latest_safe_start(env: Env) -> None:
    # deadline 16:00, 2h run, 5 min margin: latest safe start 13:55, inside the clean dip
    gated(env, "tight", deadline="2026-11-28T16:00:00Z")
    env.view = forecast_view({ZONE: [400, 400, 50, 50] + [400] * 20})
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 0
    latest = datetime(2026, 11, 28, 13, 55, tzinfo=UTC).timestamp()
    assert ctl.held["uid-tight"].planned == latest
    step = 0
    while not ctl.outcomes:
        step += 1
        env.now[0] = NOON + step * 300
        await ctl.run_once()
    assert ctl.outcomes[0].at == latest
    assert ctl.outcomes[0].reason == "latest-start"


async def test_pod_deleted_while_held_is_recorded_and_never_patched(
    env: Env, tmp_path: Path
) -> None:
    gated(env, "doomed")
    with Ledger(tmp_path / "ledger.db") as ledger:
        ctl = env.controller(ledger=ledger)
        await sync(ctl)
        await ctl.run_once()
        assert "uid-doomed" in ctl.held
        env.store.delete_pod("doomed")
        await sync(ctl)  # the relist no longer shows it
        env.now[0] = NOON + 3 * HOUR
        assert await ctl.run_once() == 0
        ledger.flush()
    assert patches(env) == []
    assert [o.outcome for o in ctl.outcomes] == ["gone"]
    [row] = list(read_records(open_reader(tmp_path / "ledger.db"), GateRecord))
    assert row.uid == "uid-doomed" and row.actual_release is None
    assert row.planned_release == NOON + 2 * HOUR and row.intensity_now_g_per_kwh == 310
    assert row.reason is not None and "deleted while held" in row.reason


async def test_pod_deleted_just_before_release_gets_404(env: Env) -> None:
    gated(env, "vanishing")
    env.view = forecast_view({ZONE: [300.0] * 24})
    ctl = env.controller()
    await sync(ctl)
    env.store.pods.pop("vanishing")  # gone at the server, the watch has not told us yet
    assert await ctl.run_once() == 0
    assert [o.outcome for o in ctl.outcomes] == ["gone"]
    assert len(env.api.seen("PATCH")) == 1


@pytest.mark.parametrize("code", [409, 422])
async def test_conflict_rereads_and_retries_once(env: Env, code: int) -> None:
    gated(env, "busy")
    env.view = forecast_view({ZONE: [300.0] * 24})
    env.store.fail_next = [code]
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 1
    assert env.store.gates("busy") == ["other.example/gate"]
    assert len(env.store.patches_applied) == 1
    assert [r.method for r in env.api.requests if r.method != "POST"][-3:] == [
        "PATCH",
        "GET",
        "PATCH",
    ]


async def test_gate_removed_by_someone_else_is_not_released_twice(env: Env) -> None:
    gated(env, "raced")
    env.view = forecast_view({ZONE: [300.0] * 24})
    ctl = env.controller()
    await sync(ctl)
    pod = env.store.pods["raced"]  # another controller removes our gate meanwhile
    pod["spec"]["schedulingGates"] = [{"name": "other.example/gate"}]
    assert await ctl.run_once() == 0
    assert env.store.patches_applied == []  # the test op failed: nothing was overwritten
    assert [o.outcome for o in ctl.outcomes] == ["released-by-other"]
    assert await ctl.run_once() == 0


async def test_api_outage_is_retried_until_released_exactly_once(env: Env) -> None:
    gated(env, "patient")
    env.view = forecast_view({ZONE: [300.0] * 24})
    ctl = env.controller()
    await sync(ctl)
    env.api.outage = True
    assert await ctl.run_once() == 0
    assert "uid-patient" in ctl.held and ctl.held["uid-patient"].releasing
    env.store.fail_next = [503]
    env.api.outage = False
    env.now[0] = NOON + 120
    assert await ctl.run_once() == 0  # 503: retried later again
    env.now[0] = NOON + 600
    assert await ctl.run_once() == 1
    assert await ctl.run_once(NOON + 900) == 0
    assert len(env.store.patches_applied) == 1
    assert [o.outcome for o in ctl.outcomes] == ["released"]


async def test_job_pods_are_released_together(env: Env) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "sweep", "uid": "job-1"}
    gated(env, "sweep-0", owner=owner)  # alone it would wait until 14:00
    gated(env, "sweep-1", owner=owner, deadline="2026-11-28T14:30:00Z")  # latest start 12:25
    gated(env, "loner")  # not in the job: keeps its own plan
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 0
    assert ctl.held["uid-sweep-0"].planned == NOON + 2 * HOUR
    assert ctl.held["uid-sweep-1"].planned == NOON + 25 * 60
    env.now[0] = NOON + 25 * 60
    assert await ctl.run_once() == 2
    assert {o.key: o.reason for o in ctl.outcomes} == {
        "e2e/sweep-1": "latest-start",
        "e2e/sweep-0": "group",
    }
    assert env.store.gates("sweep-0") == env.store.gates("sweep-1") == ["other.example/gate"]
    assert "uid-loner" in ctl.held
    # a member created after its job was released does not wait alone
    gated(env, "sweep-2", owner=owner)
    await sync(ctl)
    assert await ctl.run_once() == 1
    assert ctl.outcomes[-1].key == "e2e/sweep-2" and ctl.outcomes[-1].reason == "group"
    assert "uid-loner" in ctl.held


async def test_replans_when_forecast_refreshes(env: Env) -> None:
    gated(env, "replan")
    ctl = env.controller()
    await sync(ctl)
    await ctl.run_once()
    assert ctl.held["uid-replan"].planned == NOON + 2 * HOUR
    env.view = forecast_view({ZONE: [310, 310, 250, 250, 100, 100] + [300] * 18})  # cleaner later
    await ctl.run_once(NOON + 60)
    await ctl.drain_events()
    assert ctl.held["uid-replan"].planned == NOON + 4 * HOUR
    # both holds' events are posted in the background, and may reach the API in either order
    notes = sorted(e["note"][:17] for e in env.store.created_events)
    assert notes == ["held until 14:00Z", "held until 16:00Z"]


async def test_controller_loop_follows_the_watch(env: Env) -> None:
    ctl = env.controller(settings=GateSettings(tick_s=0.05))
    env.view = forecast_view({ZONE: [300.0] * 24})
    await ctl.start()
    try:
        gated(env, "late-arrival")  # created after the controller started: seen by the watch
        await until(lambda: bool(ctl.outcomes))
        assert ctl.outcomes[0].outcome == "released"
        assert env.store.gates("late-arrival") == ["other.example/gate"]
    finally:
        await ctl.stop()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_plan_batch_vectorised_matches_single_pods() -> None:
    view = forecast_view({"A": DIP, "B": [200.0] * 24})
    n = 50
    rng = np.random.default_rng(3)
    earliest = np.full(n, NOON)
    duration = rng.integers(1, 4, n) * HOUR
    latest = earliest + rng.integers(0, 10, n) * HOUR
    zones = [("A",) if i % 3 == 0 else ("A", "B") if i % 3 == 1 else ("B",) for i in range(n)]
    plan = plan_batch(view, zones, earliest, latest, duration, np.full(n, 0.1))
    for i in range(n):
        sl = slice(i, i + 1)
        one = plan_batch(view, [zones[i]], earliest[sl], latest[sl], duration[sl], np.array([0.1]))
        assert one.start[0] == plan.start[i] and one.hold[0] == plan.hold[i]
    assert not plan.hold[[i for i in range(n) if zones[i] == ("B",)]].any()  # flat: no saving
    assert (plan.start <= np.maximum(latest, earliest)).all()  # never after the latest start


def test_group_keys() -> None:
    labels = b'{"scheduling.x-k8s.io/pod-group":"g"}'
    pod = wire.decode_pod(b'{"metadata":{"namespace":"ns","uid":"u","labels":%s}}' % labels)
    assert group_of(pod) == "podgroup/ns/g"
    pod = wire.decode_pod(b'{"metadata":{"namespace":"ns","uid":"u"}}')
    assert group_of(pod) == "pod/u"


async def test_a_zone_new_to_the_cache_gets_its_own_forecast_grace(env: Env) -> None:
    # the controller started long ago; this pod's zone is asked of the carbon cache only now
    gated(env, "fresh-zone")
    env.view = forecast_view({})
    tracked: list[set[str]] = []
    ctl = env.controller(track_zones=lambda zones: tracked.append(set(zones)))
    ctl.started_at = NOON - 10 * ctl.settings.forecast_grace_s
    await sync(ctl)
    assert await ctl.run_once() == 0  # not fetched yet: no fail-open before the cache has tried
    assert tracked == [{ZONE}] and patches(env) == []
    env.now[0] = NOON + ctl.settings.forecast_grace_s - 1
    assert await ctl.run_once() == 0
    env.now[0] = NOON + ctl.settings.forecast_grace_s + 1
    assert await ctl.run_once() == 1  # still nothing: fail-open, as for any zone without data
    assert ctl.outcomes[0].reason == "no-forecast"


async def test_waits_for_sync_and_forecasts_before_failing_open(env: Env) -> None:
    gated(env, "early")
    env.view = forecast_view({})
    synced = [False]
    ctl = env.controller(ready=lambda: synced[0])
    ctl.started_at = NOON  # just started: the carbon cache may not have fetched yet
    await sync(ctl)
    assert await ctl.run_once() == 0  # node cache not synced: no decision at all
    synced[0] = True
    assert await ctl.run_once() == 0  # within the forecast grace period
    assert patches(env) == []
    env.now[0] = NOON + ctl.settings.forecast_grace_s + 1
    assert await ctl.run_once() == 1
    assert ctl.outcomes[0].reason == "no-forecast"


def test_policy_rules_use_class_shift_and_allowed_zones_of_fitting_nodes() -> None:
    from scheduler.cluster.state import ClusterState
    from scheduler.policy.model import Policy
    from tests.support.fakeapi import fixture

    policy = Policy.model_validate(
        {
            "classes": {
                "batch": {
                    "selector": {"matchLabels": {"app": "train"}},
                    "temporalShift": {"maxDelay": "6h", "minSaving": 0.3},
                    "constraints": {"allowedZones": ["us-*"]},
                }
            }
        }
    )
    state = ClusterState()
    state.replace_all(kube.reflector.node_list_decoder.decode(fixture("nodes-list.json")).items, [])
    rules = policy_rules(lambda: policy, zones_from_state(state))
    pod = wire.decode_pod(fixture("gates-pod-create.json"))  # app=train, 2 GPUs
    got = rules(pod)
    assert got.min_saving == 0.3 and got.max_delay_s == 6 * HOUR
    # GPU nodes with >= 2 GPUs are in eu-central, us-east, us-west; the class allows us-*
    assert got.zones == ("us-east", "us-west")
    other = wire.decode_pod(fixture("pods-get.json"))  # no class selector match
    assert policy_rules(lambda: policy, zones_from_state(state))(other).enabled


async def test_event_failures_never_block_a_release(env: Env) -> None:
    from tests.support.fakeapi import Reply, fixture

    env.api.add(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/e2e/events",
        Reply(422, fixture("events-v1-create-missing-fields.json")),
    )
    gated(env, "quiet")
    env.view = forecast_view({ZONE: [300.0] * 24})
    ctl = env.controller()
    await sync(ctl)
    assert await ctl.run_once() == 1
    await ctl.drain_events()
    assert env.store.gates("quiet") == ["other.example/gate"]
    assert env.store.created_events == []


class DipProvider:
    """A carbon provider (the cache's contract) whose forecast has the DIP shape from NOON."""

    name = "dip"

    def __init__(self, config: Any) -> None:
        self.config = config

    async def latest(self, zones: Sequence[str]) -> list[Any]:
        from carbon.types import IntensityPoint

        at = datetime.fromtimestamp(NOON, UTC)
        return [IntensityPoint(z, at, at, 310.0) for z in zones]

    async def forecast(self, zone: str, start: datetime, end: datetime) -> list[Any]:
        from carbon.types import IntensityPoint

        return [
            IntensityPoint(
                zone,
                datetime.fromtimestamp(NOON + i * HOUR, UTC),
                datetime.fromtimestamp(NOON + (i + 1) * HOUR, UTC),
                float(v),
                estimated=True,
            )
            for i, v in enumerate(DIP)
        ]

    async def history(self, zone: str, start: datetime, end: datetime) -> list[Any]:
        return []

    async def aclose(self) -> None:
        return None


async def test_plans_from_the_real_carbon_cache(env: Env) -> None:
    from carbon.cache import CarbonCache
    from carbon.config import CarbonConfig

    # a registered type (the factory below replaces the real client)
    providers = [{"name": "dip", "type": "ukgrid"}]
    config = CarbonConfig.model_validate({"providers": providers, "fallback": ["dip", "static"]})
    cache = CarbonCache(config, clock=lambda: env.now[0], factory=DipProvider)
    gated(env, "cached")
    ctl = GateController(
        env.client,
        cache.view,
        lambda pod: ShiftRules(zones=(ZONE,)),
        clock=lambda: env.now[0],
        track_zones=cache.track,
        started_at=NOON,
    )
    await sync(ctl)
    await ctl.run_once()  # asks the cache to track the zone; nothing fetched yet: fail-open grace
    assert cache.view().forecast(ZONE) is None
    await cache.refresh_once()
    assert cache.view().forecast(ZONE) is not None
    assert await ctl.run_once() == 0
    assert ctl.held["uid-cached"].planned == NOON + 2 * HOUR
    await ctl.drain_events()
    assert env.store.created_events[0]["note"].startswith("held until 14:00Z: forecast 118 vs 310")
