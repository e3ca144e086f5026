"""List + watch of one resource collection into a handler, forever (the informer of lowcarb).

:class:`Reflector` lists page by page, watches from the list's resourceVersion with bookmarks,
relists on 410 (the HTTP-200 ``ERROR`` event form and a real HTTP 410), backs off exponentially
with jitter and tolerates EOF at any time. :func:`pod_reflector` and :func:`node_reflector` build
the two lowcarb runs; :data:`ASSIGNED_NONTERMINAL` and :data:`UNASSIGNED` are the pod field
selectors of the cluster sync and the gate controller.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import structlog

from carbon.backoff import Backoff
from scheduler import wire
from scheduler.kube.client import KubeClient
from scheduler.kube.errors import Expired, KubeError, ListMeta

log = structlog.get_logger("lowcarb.kube")

#: Pods that hold GPUs: bound to a node and not finished.
ASSIGNED_NONTERMINAL = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
#: Pods not yet bound (gated pods live here; gates cannot be selected server-side).
UNASSIGNED = "spec.nodeName="


class PodList(msgspec.Struct):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[wire.Pod] | None = None


class NodeList(msgspec.Struct):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[wire.Node] | None = None


class _Meta(msgspec.Struct):
    resourceVersion: str = ""


class _Skeleton(msgspec.Struct):
    """Just enough of any object to read its resourceVersion (BOOKMARK objects are skeletons)."""

    metadata: _Meta = msgspec.field(default_factory=_Meta)


_skeleton_decoder = msgspec.json.Decoder(_Skeleton)

T = TypeVar("T")


class Handler(Protocol[T]):
    """Receives a reflector's view of one resource."""

    def on_replace(self, items: list[T]) -> None: ...
    def on_upsert(self, obj: T) -> None: ...
    def on_delete(self, obj: T) -> None: ...


@dataclass
class ReflectorStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    relists_410: int = 0
    errors: int = 0
    last_error: str = ""
    resource_version: str = ""


class Reflector(Generic[T]):
    """List + watch one resource collection into a :class:`Handler`, forever.

    Lists page by page (``limit``/``continue``; an expired token means a full relist), then
    watches from the list's resourceVersion with bookmarks. The watch is re-opened from the last
    seen resourceVersion on EOF or a broken connection; a 410 in either form triggers a relist.
    Errors back off exponentially with jitter; success resets the backoff.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        list_decoder: msgspec.json.Decoder[Any],
        obj_decoder: Callable[[bytes], T],
        handler: Handler[T],
        *,
        field_selector: str = "",
        label_selector: str = "",
        page_size: int = 500,
        watch_timeout: tuple[int, int] = (300, 600),
        backoff: Backoff | None = None,
        name: str = "",
    ) -> None:
        self.client = client
        self.path = path
        self.list_decoder = list_decoder
        self.obj_decoder = obj_decoder
        self.handler = handler
        self.params: dict[str, str] = {}
        if field_selector:
            self.params["fieldSelector"] = field_selector
        if label_selector:
            self.params["labelSelector"] = label_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.name = name or path
        self.stats = ReflectorStats()
        self.synced = asyncio.Event()
        self.resume_rv = ""

    async def relist(self) -> str:
        """List everything (retrying once from scratch if the continue token expires)."""
        for _ in range(3):
            try:
                items, rv = await self.client.list_all(
                    self.path, self.list_decoder, self.params, self.page_size
                )
            except Expired:
                log.info("list_continue_expired", reflector=self.name)
                continue
            self.handler.on_replace(items)
            self.stats.lists += 1
            self.stats.resource_version = rv
            self.synced.set()
            return rv
        raise Expired(f"list {self.path}: continue token kept expiring")

    async def run(self, on_listed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until cancelled."""
        self.resume_rv = ""
        expired_streak = 0
        while True:
            try:
                if not self.resume_rv:
                    self.resume_rv = await self.relist()
                    self.backoff.reset()
                    if on_listed is not None:
                        await on_listed()
                started = asyncio.get_running_loop().time()
                events = await self._watch()
                if events:
                    expired_streak = 0
                elif asyncio.get_running_loop().time() - started < 1.0:
                    await self.backoff.sleep()  # an instantly-empty watch: do not spin
            except asyncio.CancelledError:
                raise
            except Expired as exc:
                self.stats.relists_410 += 1
                log.info("watch_expired_relist", reflector=self.name, error=str(exc))
                self.resume_rv = ""
                expired_streak += 1
                if expired_streak > 1:  # 410 right after a relist: slow down
                    await self.backoff.sleep()
            except KubeError as exc:  # resume the watch from the last rv seen
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                delay = self.backoff.next_delay()
                log.warning("reflector_error", reflector=self.name, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a handler bug: never die, resync from a fresh list
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("reflector_handler_failed", reflector=self.name)
                self.resume_rv = ""
                await self.backoff.sleep()

    async def _watch(self) -> int:
        """One watch from ``resume_rv``, advancing it per event; returns the number of events."""
        self.stats.watches += 1
        timeout = random.randint(*self.watch_timeout)
        events = 0
        async for kind, raw in self.client.watch(self.path, self.params, self.resume_rv, timeout):
            events += 1
            self.stats.events += 1
            self.backoff.reset()
            if kind == "BOOKMARK":
                rv = _skeleton_decoder.decode(raw).metadata.resourceVersion
            else:
                try:
                    obj = self.obj_decoder(raw)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.stats.errors += 1
                    log.warning("watch_object_skipped", reflector=self.name, error=str(exc))
                    continue
                if kind == "DELETED":
                    self.handler.on_delete(obj)
                else:
                    self.handler.on_upsert(obj)
                rv = _rv_of(obj)
            if rv:
                self.resume_rv = self.stats.resource_version = rv
        return events


def _rv_of(obj: object) -> str:
    meta = getattr(obj, "metadata", None)
    return getattr(meta, "resourceVersion", "") if meta is not None else ""


pod_list_decoder = msgspec.json.Decoder(PodList)
node_list_decoder = msgspec.json.Decoder(NodeList)


def pod_reflector(
    client: KubeClient, handler: Handler[wire.Pod], field_selector: str, **kwargs: Any
) -> Reflector[wire.Pod]:
    return Reflector(
        client,
        "/api/v1/pods",
        pod_list_decoder,
        wire.decode_pod,
        handler,
        field_selector=field_selector,
        name=f"pods[{field_selector}]",
        **kwargs,
    )


def node_reflector(
    client: KubeClient, handler: Handler[wire.Node], **kwargs: Any
) -> Reflector[wire.Node]:
    return Reflector(
        client,
        "/api/v1/nodes",
        node_list_decoder,
        wire.decode_node,
        handler,
        name="nodes",
        **kwargs,
    )
