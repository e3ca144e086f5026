"""The HTTP client for the few API calls lowcarb makes (the only code that sends them).

Requests go out over one ``aiohttp`` client session (HTTP/1.1 keep-alive; its C parser and one
write per request make a Binding POST a third of httpx's CPU: 0.24 against 0.78 ms per call,
measured on loopback, which the bind of every pod pays) and bodies are decoded with msgspec into
the :mod:`scheduler.wire` slices: paginated lists, watches with bookmarks (410 in either form
raises :class:`~scheduler.kube.errors.Expired`), get/patch of a pod, a ``Binding`` (with the
decision annotations in its metadata, which the API server copies onto the pod in the same write)
and Events (bodies built by :mod:`scheduler.kube.events`).

:data:`REQUIRED_PERMISSIONS` lists every (api group, resource, verb) this client uses, so the
RBAC role in ``deploy/`` can be checked against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import msgspec

from carbon.clock import wall
from scheduler import __version__, wire
from scheduler.kube.config import KubeConfig
from scheduler.kube.errors import (
    ApiError,
    ApiUnavailable,
    Expired,
    decode_status,
    unreachable,
)
from scheduler.kube.events import EventApi, EventType, event_request
from scheduler.names import EVENT_CONTROLLER

#: (api group, resource, verb) for every call this module can make. "" is the core group.
REQUIRED_PERMISSIONS: list[tuple[str, str, str]] = [
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "get"),
    ("", "pods", "patch"),
    ("", "pods/binding", "create"),
    ("events.k8s.io", "events", "create"),
    ("", "events", "create"),
]

USER_AGENT = f"lowcarb/{__version__}"

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class _WatchEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


_event_decoder = msgspec.json.Decoder(_WatchEvent)
_encoder = msgspec.json.Encoder()


class KubeClient:
    """Thin async HTTP/1.1 client for the few API calls lowcarb makes.

    The session (and its connection pool) is opened on first use, in the running event loop."""

    def __init__(self, config: KubeConfig, *, timeout: float = 10.0) -> None:
        self.config = config
        self._base = config.host.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            tls = self.config.ssl_context()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls if tls else False),
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        auth = self.config.authorization()
        if auth:
            headers["Authorization"] = auth
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One request; returns (status, body) for 2xx, raises ApiError / ApiUnavailable."""
        try:
            async with self._http().request(
                method,
                self._base + path,
                params=dict(params) if params else None,
                data=body,
                headers=self._headers(content_type if body is not None else None),
                timeout=aiohttp.ClientTimeout(total=timeout) if timeout else self._timeout,
            ) as resp:
                status, content = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiUnavailable(f"{method} {path}: {unreachable(exc)}") from exc
        if status >= 400:
            raise ApiError(status, decode_status(status, content), method, path)
        return status, content

    # -- lists and watches --

    async def list_all(
        self,
        path: str,
        decoder: msgspec.json.Decoder[Any],
        params: Mapping[str, str],
        page_size: int = 500,
    ) -> tuple[list[Any], str]:
        """All items of a list, page by page; an expired continue token raises :class:`Expired`."""
        items: list[Any] = []
        token = ""
        rv = ""
        while True:
            query = dict(params)
            if page_size:
                query["limit"] = str(page_size)
            if token:
                query["continue"] = token
            try:
                _, body = await self.request("GET", path, params=query)
            except ApiError as exc:
                if exc.code == 410:
                    raise Expired(f"list {path}: continue token expired") from exc
                raise
            page = decoder.decode(body)
            items.extend(page.items or ())
            rv = page.metadata.resourceVersion or rv
            token = page.metadata.continue_
            if not token:
                return items, rv

    async def watch(
        self, path: str, params: Mapping[str, str], resource_version: str, timeout_s: int
    ) -> AsyncIterator[tuple[str, bytes]]:
        """Yield (type, raw object) per event until the server ends the stream.

        A 410 (as an ``ERROR`` event in a 200 stream, or as HTTP 410) raises :class:`Expired`;
        any other ``ERROR`` event or HTTP error raises :class:`ApiError`; a broken connection
        raises :class:`ApiUnavailable`. A clean EOF simply ends the iteration.
        """
        query = dict(params)
        query.update(
            watch="1",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_s),
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_s + 30.0)
        try:
            async with self._http().get(
                self._base + path, params=query, headers=self._headers(), timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    body = await resp.read()
                    if resp.status == 410:
                        raise Expired(f"watch {path}: HTTP 410")
                    raise ApiError(resp.status, decode_status(resp.status, body), "GET", path)
                async for line in _lines(resp.content):
                    event = _event_decoder.decode(line)
                    if event.type == "ERROR":
                        status = decode_status(0, bytes(event.object))
                        if status.code == 410:
                            raise Expired(f"watch {path}: {status.message}")
                        raise ApiError(status.code or 500, status, "GET", path)
                    yield event.type, bytes(event.object)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiUnavailable(f"watch {path}: {unreachable(exc)}") from exc
        except msgspec.DecodeError as exc:
            raise ApiUnavailable(f"watch {path}: undecodable event: {exc}") from exc

    # -- single objects --

    async def get_pod(self, namespace: str, name: str) -> wire.Pod:
        _, body = await self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return wire.decode_pod(body)

    async def patch_pod(
        self, namespace: str, name: str, patch: object, patch_type: PatchType = "merge"
    ) -> wire.Pod:
        """PATCH a pod (merge, JSON or strategic merge patch); returns the updated pod."""
        _, body = await self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            body=_encoder.encode(patch),
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )
        return wire.decode_pod(body)

    async def create_binding(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        annotations: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Bind the pod to ``node``; ``uid`` (when given) is a precondition, and ``annotations``
        land on the pod in the same write that sets ``spec.nodeName`` (kube-apiserver's
        ``BindingREST`` copies the Binding's ``metadata.annotations`` onto the pod)."""
        meta: dict[str, object] = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        if annotations:
            meta["annotations"] = dict(annotations)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
            body=_encoder.encode(binding),
            content_type="application/json",
            timeout=timeout,
        )

    async def create_event(
        self,
        pod: wire.Pod,
        *,
        reason: str,
        note: str,
        action: str,
        type_: EventType = "Normal",
        controller: str = EVENT_CONTROLLER,
        instance: str = "lowcarb",
        api: EventApi = "events.k8s.io",
        now: datetime | None = None,
    ) -> None:
        """Record an Event about ``pod`` (events.k8s.io/v1 by default, or core v1)."""
        when = now or datetime.fromtimestamp(wall(), UTC)
        path, event = event_request(
            pod,
            reason=reason,
            note=note,
            action=action,
            when=when,
            type_=type_,
            controller=controller,
            instance=instance,
            api=api,
        )
        await self.request(
            "POST", path, body=_encoder.encode(event), content_type="application/json"
        )


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The stream's non-blank lines, however long (a watch event is one line; a node with many
    images can pass the 128 KiB at which ``StreamReader.readline`` gives up)."""
    rest = b""
    async for chunk in stream.iter_any():
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest
