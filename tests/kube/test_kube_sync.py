"""ClusterSync / Reflector against the fake API server replaying recorded kube-apiserver bodies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler import kube, wire
from scheduler.cluster.state import ClusterState
from tests.support.fakeapi import (
    FakeApiServer,
    Recorded,
    Reply,
    WatchReply,
    assigned_nonterminal,
    filter_watch,
    fixture,
    rbac_checked,
    watch_lines,
    write_kubeconfig,
)

PODS = "/api/v1/pods"
NODES = "/api/v1/nodes"
CONTINUE_1 = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAzLCJzdGFydCI6ImZhaWxlZC1qb2JcdTAwMDAifQ"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with rbac_checked() as server:  # every call covered by the RBAC deploy/ ships
        yield server


def fast_backoff() -> kube.Backoff:
    return kube.Backoff(base=0.02, cap=0.1, floor=0.01)


def make_sync(api: FakeApiServer, state: ClusterState, **kw: object) -> kube.ClusterSync:
    config = kube.KubeConfig(host=api.url, token="test-token")
    return kube.ClusterSync(state, config, backoff=fast_backoff, **kw)  # type: ignore[arg-type]


def gpus_on(state: ClusterState, node: str) -> int:
    return sum(u.demand.gpus for u in state.pods_on(node))


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def script_lists(api: FakeApiServer, pods: str = "pods-list-assigned-nonterminal.json") -> None:
    api.add("GET", NODES, Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", PODS, Reply(200, fixture(pods)), watch=False)


def pods_watch() -> list[bytes]:
    return filter_watch(watch_lines("watch-pods.jsonl"), assigned_nonterminal)


async def test_sync_lists_then_follows_watch_events(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply(watch_lines("watch-nodes.jsonl")), watch=True)
    lines = pods_watch()  # rv 105 bound, 106 annotated, 107/108 deleting, 109 DELETED, bookmark
    resume = threading.Event()

    def second_part(req: Recorded) -> WatchReply:
        resume.wait(5)
        return WatchReply(lines[3:])

    api.add("GET", PODS, WatchReply(lines[:3], end="close"), second_part, watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        assert state.synced
        assert sorted(state.node_names())[:2] == ["euc1-a-gpu", "euc1-b-cpu"]
        # the listed pods: 4 GPUs of train-h100, 1 of infer-l4, web-cpu uses none
        await until(lambda: sync.pod_reflector.stats.events >= 3)
        assert gpus_on(state, "usw2-b-gpu") == 1
        # watch-demo (1 GPU) bound to usw2-a-gpu next to train-h100 (4), then marked deleting
        assert gpus_on(state, "usw2-a-gpu") == 5
        assert state.pod("b8986596-b951-4ba5-876e-d0ece547c473") is not None
        resume.set()
        await until(lambda: sync.pod_reflector.stats.resource_version == "113")
        # MODIFIED with deletionTimestamp keeps the GPU; DELETED frees it
        assert gpus_on(state, "usw2-a-gpu") == 4
        # node usc1-a-gpu was added, patched, then deleted; bookmark moved the rv to 118
        await until(lambda: sync.node_reflector.stats.resource_version == "118")
        assert "usc1-a-gpu" not in state.node_names()
        assert len(state.node_names()) == 6
    finally:
        await sync.stop()
    watches = [r for r in api.seen("GET", PODS) if r.is_watch]
    assert watches[0].param("resourceVersion") == "103"
    assert watches[1].param("resourceVersion") == "107"  # resumed after EOF, no relist
    assert watches[0].param("allowWatchBookmarks") == "true"
    lists = [r for r in api.seen("GET", PODS) if not r.is_watch]
    assert len(lists) == 1
    assert lists[0].param("fieldSelector") == kube.ASSIGNED_NONTERMINAL
    assert all(r.authorization == "Bearer test-token" for r in api.requests)


async def test_terminal_and_unbound_pods_never_count(api: FakeApiServer) -> None:
    # a list that ignored the field selector: done-job (Succeeded, 1 GPU on euc1-a-gpu),
    # failed-job (Failed, on use1-a-gpu) and unbound pending-gpu must not count
    script_lists(api, pods="pods-list-namespace.json")
    api.add("GET", NODES, WatchReply([]), watch=True)
    api.add("GET", PODS, WatchReply([]), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        assert gpus_on(state, "euc1-a-gpu") == 0
        assert gpus_on(state, "use1-a-gpu") == 0
        assert gpus_on(state, "usw2-a-gpu") == 4
        assert state.pod("ced5e8f6-ff5e-4e4c-808c-e4546a42003f") is None  # pending-gpu
    finally:
        await sync.stop()


async def test_pod_turning_succeeded_frees_its_gpus(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    # the unfiltered watch: train-h100 reported Succeeded must be dropped client-side too
    body = fixture("pods-get.json").replace(b'"phase":"Pending"', b'"phase":"Succeeded"')
    body = body.replace(b'"resourceVersion":"', b'"resourceVersion":"9', 1)
    event = b'{"type":"MODIFIED","object":' + body.rstrip(b"\n") + b"}\n"
    api.add("GET", PODS, WatchReply([event]), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        await until(lambda: sync.pod_reflector.stats.events >= 1)
        assert gpus_on(state, "usw2-a-gpu") == 0
    finally:
        await sync.stop()


@pytest.mark.parametrize("form", ["error-event", "http-410"])
async def test_expired_watch_relists(api: FakeApiServer, form: str) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    expired: Reply | WatchReply
    if form == "error-event":  # HTTP 200 + one ERROR event, then the server ends the stream
        expired = WatchReply(watch_lines("watch-pods-410-expired.jsonl"), end="close")
    else:
        expired = Reply(410, fixture("pods-list-continue-expired.json"))
    api.add("GET", PODS, expired, WatchReply(pods_watch()), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        await until(lambda: sync.pod_reflector.stats.relists_410 == 1)
        await until(lambda: sync.pod_reflector.stats.resource_version == "113")
        assert sync.pod_reflector.stats.lists == 2
        assert gpus_on(state, "usw2-a-gpu") == 4
        assert gpus_on(state, "usw2-b-gpu") == 1
    finally:
        await sync.stop()
    kinds = ["watch" if r.is_watch else "list" for r in api.seen("GET", PODS)]
    assert kinds[:4] == ["list", "watch", "list", "watch"]


async def test_pagination_and_expired_continue_token(api: FakeApiServer) -> None:
    api.add("GET", NODES, Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", NODES, WatchReply([]), watch=True)
    api.add("GET", PODS, WatchReply([]), watch=True)
    second_token = __import__("json").loads(fixture("pods-list-limit-2-continue.json"))["metadata"][
        "continue"
    ]
    pages = iter(
        [
            Reply(200, fixture("pods-list-limit-2.json")),
            Reply(200, fixture("pods-list-limit-2-continue.json")),
            Reply(410, fixture("pods-list-continue-expired.json")),  # compacted meanwhile
            Reply(200, fixture("pods-list-namespace.json")),  # the full relist
        ]
    )
    api.add("GET", PODS, lambda req: next(pages), watch=False)
    state = ClusterState()
    sync = make_sync(api, state, page_size=2)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        assert gpus_on(state, "usw2-a-gpu") == 4
        assert gpus_on(state, "euc1-a-gpu") == 0
        # synced means listed; the watch that follows the list may not have reached the server yet
        await until(lambda: any(r.is_watch for r in api.seen("GET", PODS)))
    finally:
        await sync.stop()
    lists = [r for r in api.seen("GET", PODS) if not r.is_watch]
    assert [r.param("continue") for r in lists] == [None, CONTINUE_1, second_token, None]
    assert all(r.param("limit") == "2" for r in lists)
    watch = next(r for r in api.seen("GET", PODS) if r.is_watch)
    assert watch.param("resourceVersion") == "103"


async def test_outage_then_recovery_with_backoff(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    api.add("GET", PODS, WatchReply(pods_watch()[:2], end="cut"), WatchReply([]), watch=True)
    api.outage = True  # connections dropped without an answer
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        await until(lambda: sync.pod_reflector.stats.errors >= 3)
        assert not sync.synced and not state.synced
        api.outage = False
        assert await sync.wait_synced(5)
        # the first watch was cut mid-stream: reopened from the last rv, without a relist
        await until(lambda: len([r for r in api.seen("GET", PODS) if r.is_watch]) >= 2)
        await until(lambda: sync.pod_reflector.stats.watches >= 2)
        assert gpus_on(state, "usw2-a-gpu") == 5
    finally:
        await sync.stop()
    watches = [r for r in api.seen("GET", PODS) if r.is_watch]
    assert watches[1].param("resourceVersion") == "106"
    assert len([r for r in api.seen("GET", PODS) if not r.is_watch and not api.outage]) >= 1


async def test_api_server_restart_connection_refused(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    api.add("GET", PODS, WatchReply([]), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        errors = sync.pod_reflector.stats.errors
        api.stop()  # ends the open watches, then refuses connections
        await until(lambda: sync.pod_reflector.stats.errors >= errors + 2)
        api.start()
        before = sync.pod_reflector.stats.watches
        await until(lambda: sync.pod_reflector.stats.watches > before)
        assert sync.synced
    finally:
        await sync.stop()


def test_load_config_from_generated_kubeconfig(tmp_path: Path) -> None:
    cfg = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:6443", token="s3cret")
    config = kube.load_config(str(cfg))
    assert config.host == "http://127.0.0.1:6443"
    assert config.authorization() == "Bearer s3cret"
    assert config.ssl_context() is False


def test_load_config_error_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(kube.KubeError, match="--kubeconfig"):
        kube.load_config(str(tmp_path / "missing"))


async def test_undecodable_watch_object_is_skipped_not_fatal(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    bad = b'{"type":"MODIFIED","object":{"kind":"Pod","metadata":"not-an-object"}}\n'
    api.add("GET", PODS, WatchReply([bad, *pods_watch()[:1]]), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        await until(lambda: sync.pod_reflector.stats.events >= 2)
        assert gpus_on(state, "usw2-a-gpu") == 5  # the good event after the bad one applied
        assert sync.pod_reflector.stats.errors == 1
    finally:
        await sync.stop()


async def test_handler_failure_resyncs_instead_of_dying(api: FakeApiServer) -> None:
    script_lists(api)
    api.add("GET", NODES, WatchReply([]), watch=True)
    api.add("GET", PODS, WatchReply(pods_watch()[:1]), watch=True)

    class Flaky(ClusterState):
        armed = False

        def upsert_pod(self, pod: wire.Pod) -> None:
            if self.armed and pod.metadata.name == "watch-demo":
                self.armed = False
                raise RuntimeError("bug")
            super().upsert_pod(pod)

    state = Flaky()
    state.armed = True
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        await until(lambda: sync.pod_reflector.stats.lists >= 2)  # relisted after the failure
        await until(lambda: gpus_on(state, "usw2-a-gpu") == 5)
    finally:
        await sync.stop()


async def test_watch_events_of_any_length_in_any_chunking(api: FakeApiServer) -> None:
    """A watch event is one JSON line, however long (a node listing hundreds of images passes
    128 KiB), and TCP chunks cut lines anywhere: every event still arrives whole, in order."""
    import json

    script_lists(api)
    lines = watch_lines("watch-nodes.jsonl")
    added = json.loads(lines[0])
    added["object"]["status"]["images"] = [
        {"names": [f"registry.example/team/image-{i:05d}@sha256:{i:064x}"], "sizeBytes": i}
        for i in range(3000)
    ]
    big = json.dumps(added, separators=(",", ":")).encode() + b"\n"
    assert len(big) > 300_000
    stream = b"".join([big, *lines[1:]])
    cuts = [stream[i : i + 7001] for i in range(0, len(stream), 7001)]  # mid-line, mid-escape
    api.add("GET", NODES, WatchReply(cuts), watch=True)
    api.add("GET", PODS, WatchReply(pods_watch()), watch=True)
    state = ClusterState()
    sync = make_sync(api, state)
    await sync.start()
    try:
        assert await sync.wait_synced(5)
        # the big ADDED, then the recorded patch, delete and bookmark, all applied
        await until(lambda: sync.node_reflector.stats.resource_version == "118")
        assert sync.node_reflector.stats.events >= len(lines) - 1
        assert "usc1-a-gpu" not in state.node_names()
    finally:
        await sync.stop()
