"""A shared-GPU pod's filter sees the pods in flight: scheduled, their bind not arrived yet.

kube-scheduler runs the next pod's scheduling cycle while the previous pod's bind is still on its
way (the binding cycle is a goroutine). Replayed here over HTTP (uvicorn on loopback, the recorded
kube-scheduler payload with two one-GPU nodes): pod A is filtered and scored, its bind is sent a
little later, and pod B's filter is sent at once, as kube-scheduler does.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY

from carbon.testing import FixedView
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.http import create_app
from scheduler.extender.inflight import InFlight
from scheduler.extender.service import Extender
from scheduler.policy.validate import load_policy
from tests.support.serve import uvicorn_serving

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "fixtures/kube-scheduler/v1.36.2/prioritize.args.nodeCacheCapable-false.json"
)
RECORDED = json.loads(FIXTURE.read_text())
NODES = ("use1-a-gpu", "usw2-b-gpu")


class Binder:
    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]
    ) -> str:
        return ""


def args_for(name: str, *, milli: int | None = None, gpus: int = 1) -> bytes:
    """The recorded args on two nodes with one GPU each, for a pod asking for ``gpus`` GPUs or
    ``milli`` thousandths of one shared GPU."""
    args: dict[str, Any] = copy.deepcopy(RECORDED)
    nodes = [n for n in args["Nodes"]["items"] if n["metadata"]["name"] in NODES]
    for node in nodes:
        node["metadata"]["labels"]["nvidia.com/gpu.count"] = "1"
        node["status"]["allocatable"]["nvidia.com/gpu"] = "1"
        node["status"]["capacity"] = dict(node["status"]["allocatable"])
    args["Nodes"]["items"] = nodes
    pod = args["Pod"]
    pod["metadata"].update(name=name, uid=f"uid-{name}")
    resources = pod["spec"]["containers"][0]["resources"]
    for key in ("requests", "limits"):
        resources[key]["nvidia.com/gpu"] = str(gpus)
    if milli is not None:
        pod["metadata"]["annotations"] = {"lowcarb.dev/gpu-milli": str(milli)}
    return json.dumps(args).encode()


def binding(name: str, node: str) -> bytes:
    namespace = RECORDED["Pod"]["metadata"]["namespace"]
    return json.dumps(
        {"PodName": name, "PodNamespace": namespace, "PodUID": f"uid-{name}", "Node": node}
    ).encode()


def waits(outcome: str) -> float:
    value = REGISTRY.get_sample_value("lowcarb_inflight_waits_total", {"outcome": outcome})
    return value or 0.0


async def failed_nodes(http: httpx.AsyncClient, body: bytes) -> dict[str, str]:
    resp = await http.post("/filter", content=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert not out.get("Error"), out
    return dict(out.get("FailedNodes") or {})


async def schedule(http: httpx.AsyncClient, body: bytes) -> None:
    """One scheduling cycle of kube-scheduler: filter, then prioritize."""
    assert await failed_nodes(http, body) == {}
    assert (await http.post("/prioritize", content=body)).status_code == 200


async def test_a_shared_gpu_pod_waits_for_the_bind_in_flight_and_sees_it() -> None:
    async with _served() as http:
        await schedule(http, args_for("a", milli=600))

        async def bind_a_later() -> None:
            await asyncio.sleep(0.1)  # the binding goroutine is slower than the next cycle
            resp = await http.post("/bind", content=binding("a", "use1-a-gpu"))
            assert resp.status_code == 200 and not resp.json().get("Error"), resp.text

        bound_before = waits("bound")
        binder = asyncio.create_task(bind_a_later())
        failed = await failed_nodes(http, args_for("b", milli=600))
        await binder
    # 600 + 600 milli do not fit on use1-a-gpu's one GPU once a's bind is counted
    assert list(failed) == ["use1-a-gpu"], failed
    assert waits("bound") == bound_before + 1


async def test_a_whole_gpu_pod_never_waits() -> None:
    async with _served() as http:
        await schedule(http, args_for("a", milli=600))
        before = waits("bound") + waits("timeout")
        # kube-scheduler counts whole GPUs itself (NodeResourcesFit sees a assumed)
        assert await failed_nodes(http, args_for("whole", gpus=1)) == {}
        assert waits("bound") + waits("timeout") == before


async def test_a_pod_that_never_binds_delays_the_next_one_once_and_bounded() -> None:
    async with _served(wait_s=0.2) as http:
        await schedule(http, args_for("lost", milli=600))  # e.g. rejected at Permit: no bind
        timeouts = waits("timeout")
        assert await failed_nodes(http, args_for("b", milli=600)) == {}
        assert waits("timeout") == timeouts + 1
        resp = await http.post("/bind", content=binding("b", "usw2-b-gpu"))  # b binds
        assert resp.status_code == 200 and not resp.json().get("Error"), resp.text
        before = waits("bound") + waits("timeout")
        failed = await failed_nodes(http, args_for("c", milli=600))
        assert waits("bound") + waits("timeout") == before  # "lost" is no longer in flight
        assert list(failed) == ["usw2-b-gpu"]


def _served(wait_s: float = 1.0) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    engine = Engine(load_policy(None))
    ext = Extender(
        state=ClusterState(),
        engine=lambda: engine,
        carbon=lambda: FixedView({}),
        binder=Binder(),
        inflight=InFlight(wait_s=wait_s),
    )
    return _client(ext)


@contextlib.asynccontextmanager
async def _client(ext: Extender) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        uvicorn_serving(create_app(ext)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client
