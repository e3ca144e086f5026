"""Keeps the cluster state in step with the API server: nodes and bound, non-terminal pods.

Two reflectors (:mod:`scheduler.kube.reflector`) feed a :class:`StateSink`
(``scheduler.cluster.state.ClusterState``, or the app's ledger-observing wrapper); a relist
replaces that side of the cache, watch events upsert and delete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from carbon.aio import cancel_all
from carbon.backoff import Backoff
from scheduler import wire
from scheduler.kube.client import KubeClient
from scheduler.kube.config import KubeConfig
from scheduler.kube.reflector import ASSIGNED_NONTERMINAL, node_reflector, pod_reflector

log = structlog.get_logger("lowcarb.kube")

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class StateSink(Protocol):
    """The part of ``scheduler.cluster.state.ClusterState`` the sync feeds."""

    def upsert_node(self, node: wire.Node) -> None: ...
    def delete_node(self, name: str) -> None: ...
    def upsert_pod(self, pod: wire.Pod) -> None: ...
    def delete_pod(self, uid: str) -> None: ...
    def replace_all(
        self, nodes: Iterable[wire.Node] | None, pods: Iterable[wire.Pod] | None
    ) -> None: ...
    def mark_synced(self) -> None: ...


class _NodeHandler:
    def __init__(self, state: StateSink) -> None:
        self.state = state

    def on_replace(self, items: list[wire.Node]) -> None:
        self.state.replace_all(items, None)

    def on_upsert(self, obj: wire.Node) -> None:
        self.state.upsert_node(obj)

    def on_delete(self, obj: wire.Node) -> None:
        self.state.delete_node(obj.metadata.name)


class _PodHandler:
    def __init__(self, state: StateSink) -> None:
        self.state = state

    def on_replace(self, items: list[wire.Pod]) -> None:
        self.state.replace_all(None, [p for p in items if holds_resources(p)])

    def on_upsert(self, obj: wire.Pod) -> None:
        # terminal or unbound pods go through too: the state frees their resources and an
        # observing sink (the ledger) sees the final phase
        self.state.upsert_pod(obj)

    def on_delete(self, obj: wire.Pod) -> None:
        if obj.status.phase in TERMINAL_PHASES:  # left the field selector by finishing
            self.state.upsert_pod(obj)
        self.state.delete_pod(obj.metadata.uid)


def holds_resources(pod: wire.Pod) -> bool:
    """Bound to a node and not finished: its requests count against the node."""
    return bool(pod.spec.nodeName) and pod.status.phase not in TERMINAL_PHASES


class ClusterSync:
    """Keeps ``ClusterState`` in step with the cluster: nodes and bound, non-terminal pods.

    ``await start()`` returns at once; ``synced`` turns true (and ``state.mark_synced()`` is
    called) once both initial lists have been applied. A later relist (410) replaces that side
    of the cache with ``replace_all``. ``client`` is shared with :class:`Binder` and the gate
    controller.
    """

    def __init__(
        self,
        state: StateSink,
        config: KubeConfig,
        *,
        client: KubeClient | None = None,
        page_size: int = 500,
        backoff: Callable[[], Backoff] = Backoff,
        watch_timeout: tuple[int, int] = (300, 600),
    ) -> None:
        self.state = state
        self.config = config
        self.client = client or KubeClient(config)
        self._own_client = client is None
        self.node_reflector = node_reflector(
            self.client,
            _NodeHandler(state),
            page_size=page_size,
            backoff=backoff(),
            watch_timeout=watch_timeout,
        )
        self.pod_reflector = pod_reflector(
            self.client,
            _PodHandler(state),
            ASSIGNED_NONTERMINAL,
            page_size=page_size,
            backoff=backoff(),
            watch_timeout=watch_timeout,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.synced = False

    async def _after_list(self) -> None:
        if self.synced:
            return
        if self.node_reflector.synced.is_set() and self.pod_reflector.synced.is_set():
            self.synced = True
            self.state.mark_synced()
            log.info("cluster_synced")

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self.node_reflector.run(self._after_list), name="lowcarb-nodes"),
            asyncio.create_task(self.pod_reflector.run(self._after_list), name="lowcarb-pods"),
        ]

    async def wait_synced(self, timeout: float | None = None) -> bool:
        async def _wait() -> None:
            while not self.synced:
                await asyncio.sleep(0.01)

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._own_client:
            await self.client.aclose()
