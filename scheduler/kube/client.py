"""The only module that talks to the Kubernetes API server.

Auth and connection settings come from the ``kubernetes`` package's config loaders (kubeconfig or
in-cluster); requests go out over an async ``httpx`` client (HTTP/1.1) and bodies are decoded with
msgspec into the :mod:`scheduler.wire` slices. It provides:

* :class:`Reflector`: list (paginated) + watch of one resource with bookmarks, relist on 410 (the
  HTTP-200 ``ERROR`` event form and a real HTTP 410), exponential backoff with jitter, and EOF
  tolerated at any time;
* :class:`ClusterSync`: a node reflector and an assigned-pod reflector feeding ``ClusterState``;
* :class:`Binder`: POST a ``Binding`` (bounded by a timeout below the extender's ``httpTimeout``)
  and merge-patch the decision annotations in the background;
* :meth:`KubeClient.patch_pod`, :meth:`KubeClient.get_pod`, :meth:`KubeClient.create_event`.

:data:`REQUIRED_PERMISSIONS` lists every (api group, resource, verb) this module uses, so the RBAC
role in ``deploy/`` can be checked against it.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
import msgspec
import structlog

from carbon.aio import cancel_all
from carbon.clock import wall
from scheduler import __version__, wire

log = structlog.get_logger("lowcarb.kube")

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

#: Pods that hold GPUs: bound to a node and not finished.
ASSIGNED_NONTERMINAL = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
#: Pods not yet bound (gated pods live here; gates cannot be selected server-side).
UNASSIGNED = "spec.nodeName="
USER_AGENT = f"lowcarb/{__version__}"

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


# --- wire types for API machinery -------------------------------------------------------------


class StatusDetails(msgspec.Struct, omit_defaults=True):
    name: str = ""
    kind: str = ""


class ListMeta(msgspec.Struct, omit_defaults=True, rename={"continue_": "continue"}):
    resourceVersion: str = ""
    continue_: str = ""
    remainingItemCount: int | None = None


class Status(msgspec.Struct, omit_defaults=True):
    """``metav1.Status``: every error body, the Binding answer and watch ``ERROR`` objects."""

    kind: str = ""
    status: str = ""
    message: str = ""
    reason: str = ""
    code: int = 0
    details: StatusDetails | None = None
    metadata: ListMeta | None = None


class PodList(msgspec.Struct):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[wire.Pod] | None = None


class NodeList(msgspec.Struct):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[wire.Node] | None = None


class _WatchEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _Meta(msgspec.Struct):
    resourceVersion: str = ""


class _Skeleton(msgspec.Struct):
    """Just enough of any object to read its resourceVersion (BOOKMARK objects are skeletons)."""

    metadata: _Meta = msgspec.field(default_factory=_Meta)


_status_decoder = msgspec.json.Decoder(Status)
_event_decoder = msgspec.json.Decoder(_WatchEvent)
_skeleton_decoder = msgspec.json.Decoder(_Skeleton)
_encoder = msgspec.json.Encoder()


# --- errors -------------------------------------------------------------------------------------


class KubeError(Exception):
    """Any failure talking to the API server."""


class ApiUnavailable(KubeError):
    """The API server could not be reached or the connection broke (retry with backoff)."""


def _unreachable(exc: httpx.HTTPError) -> str:
    """Why a request got no answer, in lowcarb's words; the transport's own text follows in
    parentheses for the log, as its wording is no contract."""
    detail = f"({type(exc).__name__}: {exc})"
    cause: BaseException | None = exc
    while cause is not None:  # httpx wraps httpcore, which wraps ssl
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                "TLS: the API server's certificate is not trusted by the kubeconfig's "
                f"certificate-authority, or does not name its host {detail}"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting {detail}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out waiting for the answer {detail}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect {detail}"
    return f"connection failed {detail}"


class ApiError(KubeError):
    """The API server answered with an error ``Status``."""

    def __init__(self, code: int, status: Status, method: str = "", path: str = "") -> None:
        self.code = code
        self.status = status
        self.method = method
        self.path = path
        super().__init__(self.describe())

    @property
    def reason(self) -> str:
        return self.status.reason

    def describe(self) -> str:
        reason = self.status.reason or "Error"
        message = self.status.message or "(no message)"
        return f"{self.code} {reason}: {message}"


class Expired(KubeError):
    """A resourceVersion or continue token is too old: relist from scratch."""


def _decode_status(code: int, body: bytes) -> Status:
    try:
        return _status_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:200].decode("utf-8", "replace").strip()
        return Status(status="Failure", message=text or "(empty body)", code=code)


# --- configuration ------------------------------------------------------------------------------


@dataclass
class KubeConfig:
    """Where the API server is and how to authenticate (built by :func:`load_config`)."""

    host: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    #: Returns a fresh ``Authorization`` header value (rotating in-cluster tokens, exec plugins).
    token_provider: Callable[[], str | None] | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        if self.token_provider is not None:
            value = self.token_provider()
            if value:
                return value
        return f"Bearer {self.token}" if self.token else None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for httpx: the cluster CA and the client certificate, if any.

        ``insecure-skip-tls-verify`` turns server verification off but still presents the
        client certificate (x509 client auth).
        """
        if not self.host.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file if self.verify else None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load_config(
    kubeconfig: str | None = None, *, in_cluster: bool = False, context: str | None = None
) -> KubeConfig:
    """Read a kubeconfig file (or the in-cluster service account) with the kubernetes package.

    Raises :class:`KubeError` with the file and the fix when the config cannot be loaded.
    """
    from kubernetes import client as k8s_client  # heavy import: only when a cluster is used
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
    except Exception as exc:  # the loaders raise several unrelated types
        where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '~'}"
        fix = (
            "run inside a pod with a service account"
            if in_cluster
            else "pass --kubeconfig FILE pointing at a valid kubeconfig"
        )
        raise KubeError(f"cannot load {where}: {exc}; {fix}") from exc

    def provider() -> str | None:
        # newer clients keep the header under "BearerToken", older ones under "authorization";
        # the refresh hook (exec plugins, rotating in-cluster tokens) updates it in place
        for key in ("BearerToken", "authorization"):
            value = cfg.get_api_key_with_prefix(key)
            if value:
                return str(value)
        return None

    return KubeConfig(
        host=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=bool(cfg.verify_ssl),
        token_provider=provider,
    )


# --- backoff ------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with jitter: U(c/2, c) where c = min(cap, base * 2**attempts)."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.05
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2.0**self.attempts))
        self.attempts += 1
        return max(self.floor, self.rng.uniform(ceiling / 2.0, ceiling))

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


# --- client -------------------------------------------------------------------------------------


class KubeClient:
    """Thin async HTTP/1.1 client for the few API calls lowcarb makes."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.host,
            verify=config.ssl_context(),
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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
            resp = await self._http.request(
                method,
                path,
                params=dict(params) if params else None,
                content=body,
                headers=self._headers(content_type if body is not None else None),
                timeout=httpx.Timeout(timeout) if timeout else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"{method} {path}: {_unreachable(exc)}") from exc
        if resp.status_code >= 400:
            raise ApiError(
                resp.status_code, _decode_status(resp.status_code, resp.content), method, path
            )
        return resp.status_code, resp.content

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
        timeout = httpx.Timeout(10.0, read=timeout_s + 30.0)
        try:
            async with self._http.stream(
                "GET", path, params=query, headers=self._headers(), timeout=timeout
            ) as resp:
                if resp.status_code >= 400:
                    body = await resp.aread()
                    if resp.status_code == 410:
                        raise Expired(f"watch {path}: HTTP 410")
                    raise ApiError(
                        resp.status_code, _decode_status(resp.status_code, body), "GET", path
                    )
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    event = _event_decoder.decode(line)
                    if event.type == "ERROR":
                        status = _decode_status(0, bytes(event.object))
                        if status.code == 410:
                            raise Expired(f"watch {path}: {status.message}")
                        raise ApiError(status.code or 500, status, "GET", path)
                    yield event.type, bytes(event.object)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"watch {path}: {_unreachable(exc)}") from exc
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
        self, namespace: str, name: str, uid: str, node: str, timeout: float | None = None
    ) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        if not uid:
            del binding["metadata"]["uid"]  # type: ignore[attr-defined]
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
        type_: Literal["Normal", "Warning"] = "Normal",
        controller: str = "lowcarb.dev/scheduler",
        instance: str = "lowcarb",
        api: Literal["events.k8s.io", "core"] = "events.k8s.io",
        now: datetime | None = None,
    ) -> None:
        """Record an Event about ``pod`` (events.k8s.io/v1 by default, or core v1)."""
        meta = pod.metadata
        when = (now or datetime.fromtimestamp(wall(), UTC)).astimezone(UTC)
        ref = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "resourceVersion": meta.resourceVersion,
        }
        name = f"{meta.name}.{when.strftime('%Y%m%d%H%M%S%f')}{random.randrange(16**4):04x}"
        event: dict[str, Any]
        if api == "events.k8s.io":
            path = f"/apis/events.k8s.io/v1/namespaces/{meta.namespace}/events"
            event = {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": meta.namespace},
                "eventTime": micro_time(when),
                "reportingController": controller,
                "reportingInstance": instance,
                "action": action,
                "reason": reason,
                "regarding": ref,
                "note": note[:1024],
                "type": type_,
            }
        else:
            path = f"/api/v1/namespaces/{meta.namespace}/events"
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": meta.namespace},
                "involvedObject": ref,
                "reason": reason,
                "message": note[:1024],
                "type": type_,
                "source": {"component": controller},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "action": action,
                "reportingComponent": controller,
                "reportingInstance": instance,
            }
        await self.request(
            "POST", path, body=_encoder.encode(event), content_type="application/json"
        )


def micro_time(when: datetime) -> str:
    """``metav1.MicroTime``: always exactly 6 fractional digits (the API server insists)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- reflector ----------------------------------------------------------------------------------

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


_pod_list_decoder = msgspec.json.Decoder(PodList)
_node_list_decoder = msgspec.json.Decoder(NodeList)


def pod_reflector(
    client: KubeClient, handler: Handler[wire.Pod], field_selector: str, **kwargs: Any
) -> Reflector[wire.Pod]:
    return Reflector(
        client,
        "/api/v1/pods",
        _pod_list_decoder,
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
        _node_list_decoder,
        wire.decode_node,
        handler,
        name="nodes",
        **kwargs,
    )


# --- cluster sync -------------------------------------------------------------------------------

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


# --- binder -------------------------------------------------------------------------------------

DECISION_ANNOTATION = "lowcarb.dev/decision"
GPU_INDEX_ANNOTATION = "lowcarb.dev/gpu-index"


class Binder:
    """Binds pods for the extender's bind verb and records the decision as annotations.

    The bind verb answers as soon as the Binding is created (one API call, bounded by
    ``timeout_s``, which should stay below the extender's ``httpTimeout``); the annotation patch
    follows in the background (:meth:`drain` waits for it).
    """

    def __init__(self, client: KubeClient, *, timeout_s: float = 1.5) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._pending: set[asyncio.Task[None]] = set()

    async def bind(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        annotations: Mapping[str, object] | None = None,
    ) -> str:
        """Create the Binding; return "" on success or the error text (never raises).

        Annotations are merge-patched after a successful bind (values coerced to strings, as
        the API server rejects anything else with 422). A failed annotation patch is logged
        but does not fail the bind: the pod is bound either way.
        """
        what = f"bind pod {namespace}/{name} to node {node}"
        try:
            await self.client.create_binding(namespace, name, uid, node, timeout=self.timeout_s)
        except ApiError as exc:
            return f"{what}: {exc.describe()}"
        except KubeError as exc:
            return f"{what}: API server unreachable: {exc}"
        if annotations:
            patch = {"metadata": {"annotations": {k: _as_str(v) for k, v in annotations.items()}}}
            task = asyncio.get_running_loop().create_task(self._annotate(namespace, name, patch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return ""

    async def _annotate(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            await self.client.patch_pod(namespace, name, patch, "merge")
        except KubeError as exc:
            log.warning("annotate_failed", pod=f"{namespace}/{name}", error=str(exc))

    async def drain(self) -> None:
        """Wait for the annotation patches still in flight (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict | bool) or value is None:
        return _encoder.encode(value).decode()
    return str(value)
