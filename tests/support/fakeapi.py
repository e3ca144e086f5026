"""A local fake Kubernetes API server for tests (a real HTTP/1.1 server on 127.0.0.1).

Answers with the recorded kube-apiserver bodies in ``tests/fixtures/kube-apiserver`` byte-exact,
framed as Go's server frames them (``Content-Length`` up to 2 KB, chunked above; one chunk per
watch event), and records every request (method, path, query, content type, body). Replies are
scripted per route: a queue of :class:`Reply` / :class:`WatchReply` (the last one repeats) or a
callable; a route path ending in ``/*`` matches every path under it. ``stop()`` / ``start()`` on
the same port simulate an API server restart; ``outage`` makes every request fail with a dropped
connection.

:class:`PodStore` is an optional tiny "mini apiserver" for pods (list, watch, get, JSON and merge
patch, Binding, events, delete) built from recorded pod objects, for the gate controller's and the
binder's tests. Its Binding does what kube-apiserver's ``BindingREST`` does: checks the uid
precondition, refuses a bound or gated pod, and sets ``spec.nodeName`` together with the Binding's
``metadata.annotations`` (and labels) in one write. :class:`LeaseStore` is one for
coordination.k8s.io/v1 Leases (get, create, resourceVersion-checked update, with the recorded
404/409/422 answers), for leader election.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube-apiserver"
GO_BUFFER = 2048


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def watch_lines(name: str) -> list[bytes]:
    """The events of a recorded watch, one JSON line (with its ``\\n``) each."""
    return [line + b"\n" for line in fixture(name).split(b"\n") if line]


@dataclass
class Reply:
    status: int
    body: bytes
    chunked: bool | None = None  # None: as Go does (chunked when the body exceeds 2 KB)


@dataclass
class WatchReply:
    """A watch stream: each line one chunk, then ``end``.

    ``close``: terminal chunk (server-side timeout); ``cut``: drop the connection mid-stream;
    ``hang``: keep the stream open until :meth:`FakeApiServer.release_watches` or ``stop()``.
    """

    lines: Iterable[bytes]
    end: Literal["close", "cut", "hang"] = "hang"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    content_type: str
    authorization: str
    body: bytes

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") == ["1"]

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Recorded], "Reply | WatchReply"]


@dataclass
class Route:
    method: str
    path: str
    watch: bool | None  # None: either
    replies: list[Reply | WatchReply | Responder]
    match: Callable[[Recorded], bool] | None = None
    hits: int = 0


def permission_of(req: Recorded) -> tuple[str, str, str]:
    """The RBAC (api group, resource, verb) a real API server would check for ``req``."""
    parts = [p for p in req.path.split("/") if p]
    group = ""
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        group = parts[1]
        rest = parts[3:]
    else:
        return ("", req.path, req.method.lower())  # non-resource URL
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    verb = {
        "GET": "get" if named else ("watch" if req.is_watch else "list"),
        "POST": "create",
        "PATCH": "patch",
        "PUT": "update",
        "DELETE": "delete",
    }[req.method]
    return (group, resource, verb)


class FakeApiServer:
    """See the module docstring. Use as ``with FakeApiServer() as api: ...``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.routes: list[Route] = []
        self.requests: list[Recorded] = []
        self.outage = False
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    # -- scripting --

    def add(
        self,
        method: str,
        path: str,
        *replies: Reply | WatchReply | Responder,
        watch: bool | None = None,
        match: Callable[[Recorded], bool] | None = None,
    ) -> Route:
        route = Route(method, path, watch, list(replies), match)
        with self._lock:
            self.routes.insert(0, route)  # later routes win
        return route

    def reply_fixture(
        self, method: str, path: str, name: str, status: int = 200, **kw: Any
    ) -> Route:
        return self.add(method, path, Reply(status, fixture(name)), **kw)

    def release_watches(self) -> None:
        """End every hanging watch with its terminal chunk (as a server-side timeout would)."""
        self._release.set()

    def seen(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    # -- lifecycle --

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeApiServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # as Go's net/http: no Nagle delay between the header and the body writes
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fake._lock:
                    fake._connections.add(self.connection)

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._release.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end every open stream (connections are refused until start())."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:  # a restarted server keeps no keep-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving --

    def _route(self, req: Recorded) -> Reply | WatchReply | None:
        with self._lock:
            for route in self.routes:
                if route.method != req.method or not _path_matches(route.path, req.path):
                    continue
                if route.watch is not None and route.watch != req.is_watch:
                    continue
                if route.match is not None and not route.match(req):
                    continue
                reply = route.replies[min(route.hits, len(route.replies) - 1)]
                route.hits += 1
                break
            else:
                return None
        return reply(req) if callable(reply) else reply

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Recorded(
            method=h.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            raw_query=split.query,
            content_type=h.headers.get("Content-Type", ""),
            authorization=h.headers.get("Authorization", ""),
            body=body,
        )
        with self._lock:
            self.requests.append(req)
            outage = self.outage
        if outage:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        reply = self._route(req)
        if reply is None:
            reply = Reply(404, _status(404, "NotFound", f"fake: no route for {h.command} {h.path}"))
        if isinstance(reply, WatchReply):
            self._stream(h, reply)
        else:
            self._send(h, reply)

    def _headers(self, h: BaseHTTPRequestHandler, status: int) -> None:
        h.send_response_only(status)
        h.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
        h.send_header("Cache-Control", "no-cache, private")
        h.send_header("Content-Type", "application/json")
        h.send_header("Date", h.date_time_string())

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        chunked = reply.chunked if reply.chunked is not None else len(reply.body) > GO_BUFFER
        self._headers(h, reply.status)
        with contextlib.suppress(OSError):
            if chunked:
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
                for i in range(0, len(reply.body), GO_BUFFER):
                    _chunk(h, reply.body[i : i + GO_BUFFER])
                h.wfile.write(b"0\r\n\r\n")
            else:
                h.send_header("Content-Length", str(len(reply.body)))
                h.end_headers()
                h.wfile.write(reply.body)
            h.wfile.flush()

    def _stream(self, h: BaseHTTPRequestHandler, reply: WatchReply) -> None:
        self._headers(h, 200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        with contextlib.suppress(OSError):
            for line in reply.lines:
                _chunk(h, line)
                h.wfile.flush()
            if reply.end == "cut":
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if reply.end == "hang":
                while not self._release.wait(0.05):
                    pass
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/*"):
        return path.startswith(pattern[:-1])
    return pattern == path


def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """A ``metav1.Status`` in the API server's key order (see the fixtures)."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        status["details"] = details
    status["code"] = code
    return json.dumps(status, separators=(",", ":")).encode() + b"\n"


@contextlib.contextmanager
def rbac_checked(extra: Iterable[tuple[str, str, str]] = ()) -> Iterator[FakeApiServer]:
    """A started :class:`FakeApiServer`; on exit, asserts that every call it served is covered
    by the RBAC lowcarb declares (``scheduler.kube.client.REQUIRED_PERMISSIONS``, which
    ``deploy/`` ships, plus ``extra``, e.g. the Lease permissions)."""
    from scheduler.kube.client import REQUIRED_PERMISSIONS

    server = FakeApiServer().start()
    try:
        yield server
    finally:
        server.stop()
    used = {permission_of(r) for r in server.requests}
    allowed = set(REQUIRED_PERMISSIONS) | set(extra)
    assert used <= allowed, used - allowed


def hold_first_pod_list(server: FakeApiServer) -> threading.Event:
    """Script ``server`` as a cluster whose pod list waits (30 s at most) for the returned event:
    lowcarb's cache is not synced until the test sets it. Nodes list and watches answer at once."""
    release = threading.Event()

    def slow_pod_list(req: Recorded) -> Reply:
        release.wait(30)
        return Reply(200, fixture("pods-list-assigned-nonterminal.json"))

    server.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    server.add("GET", "/api/v1/pods", slow_pod_list, watch=False)
    server.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    server.add("GET", "/api/v1/pods", WatchReply([]), watch=True)
    return release


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- a tiny pod store for controller tests ------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lowcarb_command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("lowcarb")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from scheduler.cli.main import main; main()"]


def write_kubeconfig(path: Path, server: str, token: str = "t") -> Path:
    """A kubeconfig at ``path`` whose only context talks to ``server`` with a bearer ``token``."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{server}'}}}}]\n"
        f"users: [{{name: lowcarb, user: {{token: {token}}}}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: lowcarb}}]\n"
    )
    return path


def recorded_pod(name: str = "gated-train") -> dict[str, Any]:
    """A recorded gated Pod object (from ``gates-pod-create.json``) as a dict."""
    if name == "gated-train":
        data: dict[str, Any] = json.loads(fixture("gates-pod-create.json"))
        return data
    raise KeyError(name)


@dataclass
class PodStore:
    """Pods held by the fake API server; answers list/watch/get/patch/delete like the real one.

    List items drop ``kind``/``apiVersion`` as a real list does; watch objects carry them. The
    JSON patch supports ``test``/``remove`` (our release path); a failed test answers the recorded
    422 body byte-exact; a merge patch merges ``metadata.annotations`` and ``labels`` (RFC 7386).
    ``fail_next`` scripts status codes for the next patches. With ``selectors`` the list and the
    watch honour ``fieldSelector`` (``spec.nodeName``, ``status.phase``, ``metadata.name``,
    ``metadata.namespace``; ``=``/``!=``), a watch turning a pod that enters or leaves the
    selection into ADDED / DELETED as the API server does.
    """

    api: FakeApiServer
    namespace: str = "e2e"
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    rv: itertools.count[int] = field(default_factory=lambda: itertools.count(200))
    last_rv: int = 199
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    patches_applied: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    created_events: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    selectors: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def install(self) -> PodStore:
        ns = self.namespace
        self.api.add("GET", "/api/v1/pods", self._list, watch=False)
        self.api.add("GET", "/api/v1/pods", self._watch, watch=True)
        pods = f"/api/v1/namespaces/{ns}/pods/*"
        self.api.add("GET", pods, self._get)
        self.api.add("PATCH", pods, self._patch)
        self.api.add("POST", pods, self._bind)
        self.api.add("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", self._create_event)
        return self

    def _next_rv(self) -> str:
        self.last_rv = next(self.rv)
        return str(self.last_rv)

    def add_pod(
        self,
        name: str,
        *,
        annotations: dict[str, str] | None = None,
        gates: list[str] | None = None,
        labels: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
        created: str | None = None,
        notify: bool = True,
        uid: str | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        pod = recorded_pod()
        if spec is not None:
            pod["spec"].update(spec)
        meta = pod["metadata"]
        meta["name"] = name
        meta["namespace"] = self.namespace
        meta["uid"] = uid or f"uid-{name}"
        if annotations is not None:
            meta["annotations"] = annotations
        if labels is not None:
            meta["labels"] = labels
        if owner is not None:
            meta["ownerReferences"] = [owner]
        if created is not None:
            meta["creationTimestamp"] = created
        if gates is not None:
            if gates:
                pod["spec"]["schedulingGates"] = [{"name": g} for g in gates]
            else:
                pod["spec"].pop("schedulingGates", None)
        with self._cond:
            meta["resourceVersion"] = self._next_rv()
            self.pods[name] = pod
            if notify:
                self.events.append(("ADDED", copy.deepcopy(pod)))
            self._cond.notify_all()
        return pod

    def delete_pod(self, name: str) -> None:
        with self._cond:
            pod = self.pods.pop(name)
            pod["metadata"]["resourceVersion"] = self._next_rv()
            self.events.append(("DELETED", copy.deepcopy(pod)))
            self._cond.notify_all()

    def set_phase(self, name: str, phase: str) -> None:
        """The kubelet's status update: the pod is now ``phase`` (e.g. ``Succeeded``)."""
        with self._cond:
            pod = copy.deepcopy(self.pods[name])
            pod.setdefault("status", {})["phase"] = phase
            pod["metadata"]["resourceVersion"] = self._next_rv()
            self.pods[name] = pod
            self.events.append(("MODIFIED", copy.deepcopy(pod)))
            self._cond.notify_all()

    def gates(self, name: str) -> list[str]:
        pod = self.pods.get(name)
        if pod is None:
            return []
        return [g["name"] for g in pod["spec"].get("schedulingGates", [])]

    # -- responders --

    def _selection(self, req: Recorded) -> Callable[[dict[str, Any]], bool]:
        text = req.param("fieldSelector") if self.selectors else None
        return field_selector(text or "")

    def _list(self, req: Recorded) -> Reply:
        selected = self._selection(req)
        with self._cond:
            items = []
            for name in sorted(self.pods):
                if not selected(self.pods[name]):
                    continue
                item = {k: v for k, v in self.pods[name].items() if k not in ("kind", "apiVersion")}
                items.append(item)
            body = {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.last_rv)},
                "items": items,
            }
        return Reply(200, compact(body) + b"\n")

    def _watch(self, req: Recorded) -> WatchReply:
        """A live watch: every stored event after the requested rv, then new ones as they come."""
        since = int(req.param("resourceVersion") or 0)
        release = self.api._release
        selected = self._selection(req)
        with self._cond:  # what the watcher's list showed: the selected pods as of ``since``
            inside = {
                p["metadata"]["uid"]
                for p in _state_at(self.pods, self.events, since).values()
                if selected(p)
            }

        def stream() -> Iterator[bytes]:
            with self._cond:  # events are appended in resourceVersion order: start after since
                pos = next(
                    (
                        i
                        for i, e in enumerate(self.events)
                        if int(e[1]["metadata"]["resourceVersion"]) > since
                    ),
                    len(self.events),
                )
            while not release.is_set():
                with self._cond:
                    pending = self.events[pos:]
                    if not pending:
                        self._cond.wait(0.05)
                        continue
                    pos += len(pending)
                for kind, obj in pending:
                    if self.selectors:
                        uid = obj["metadata"].get("uid", "")
                        was, now = uid in inside, kind != "DELETED" and selected(obj)
                        if now:
                            inside.add(uid)
                            kind = "MODIFIED" if was else "ADDED"
                        elif was:
                            inside.discard(uid)
                            kind = "DELETED"
                        else:
                            continue
                    yield compact({"type": kind, "object": obj}) + b"\n"

        return WatchReply(stream(), end="close")

    def _get(self, req: Recorded) -> Reply:
        name = req.path.rsplit("/", 1)[1]
        with self._cond:
            pod = self.pods.get(name)
            if pod is None:
                msg = f'pods "{name}" not found'
                return Reply(404, _status(404, "NotFound", msg, {"name": name, "kind": "pods"}))
            return Reply(200, compact(pod) + b"\n")

    def _patch(self, req: Recorded) -> Reply:
        name = req.path.rsplit("/", 1)[1]
        if self.fail_next:
            code = self.fail_next.pop(0)
            if code == 409:
                msg = (
                    f'Operation cannot be fulfilled on pods "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again"
                )
                return Reply(409, _status(409, "Conflict", msg, {"name": name, "kind": "pods"}))
            if code == 422:
                return Reply(422, fixture("gates-jsonpatch-test-fails.json"))
            return Reply(code, _status(code, "InternalError", "fake: scripted failure"))
        merge = req.content_type == "application/merge-patch+json"
        if req.content_type != "application/json-patch+json" and not merge:
            return Reply(415, fixture("error-415-patch-content-type-json.json"))
        ops = req.json()
        with self._cond:
            pod = self.pods.get(name)
            if pod is None:
                msg = f'pods "{name}" not found'
                return Reply(404, _status(404, "NotFound", msg, {"name": name, "kind": "pods"}))
            patched = copy.deepcopy(pod)
            if merge:
                for key in ("annotations", "labels"):
                    _merge_strings(patched["metadata"], key, ops.get("metadata", {}).get(key))
                ops = [ops]
            for op in ops if not merge else ():
                if not _apply_op(patched, op):
                    return Reply(422, fixture("gates-jsonpatch-test-fails.json"))
            if patched["spec"].get("schedulingGates") == []:
                del patched["spec"]["schedulingGates"]  # the API server omits an empty list
            patched["metadata"]["resourceVersion"] = self._next_rv()
            self.pods[name] = patched
            self.events.append(("MODIFIED", copy.deepcopy(patched)))
            self.patches_applied.append((name, ops))
            return Reply(200, compact(patched) + b"\n")

    def _bind(self, req: Recorded) -> Reply:
        """``POST pods/{name}/binding`` as kube-apiserver's ``BindingREST.Create`` answers it."""
        parts = req.path.rsplit("/", 2)
        if parts[-1] != "binding":
            msg = f"fake: no route for POST {req.path}"
            return Reply(404, _status(404, "NotFound", msg))
        name = parts[-2]
        binding = req.json()
        meta = binding.get("metadata") or {}
        if meta.get("name") != name:
            return Reply(400, fixture("binding-name-mismatch.json"))
        with self._cond:
            pod = self.pods.get(name)
            if pod is None:
                msg = f'pods "{name}" not found'
                return Reply(404, _status(404, "NotFound", msg, {"name": name, "kind": "pods"}))
            uid = pod["metadata"]["uid"]
            if meta.get("uid") and meta["uid"] != uid:
                msg = (
                    f'Operation cannot be fulfilled on pods "{name}": StorageError: invalid '
                    f"object, Code: 4, Key: /registry/pods/{self.namespace}/{name}, "
                    "ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in "
                    f"precondition: {meta['uid']}, UID in object meta: {uid}"
                )
                return Reply(409, _status(409, "Conflict", msg, {"name": name, "kind": "pods"}))
            why = ""
            if pod["spec"].get("schedulingGates"):
                why = f"pod {name} has non-empty .spec.schedulingGates"
            elif pod["spec"].get("nodeName"):
                why = f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
            if why:
                msg = f'Operation cannot be fulfilled on pods/binding "{name}": {why}'
                details = {"name": name, "kind": "pods/binding"}
                return Reply(409, _status(409, "Conflict", msg, details))
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = binding["target"]["name"]
            for key in ("annotations", "labels"):  # copied in the same write
                _merge_strings(bound["metadata"], key, meta.get(key))
            status = bound.setdefault("status", {})
            conditions = [c for c in status.get("conditions", []) if c["type"] != "PodScheduled"]
            status["conditions"] = [*conditions, {"type": "PodScheduled", "status": "True"}]
            bound["metadata"]["resourceVersion"] = self._next_rv()
            self.pods[name] = bound
            self.events.append(("MODIFIED", copy.deepcopy(bound)))
            self.bindings.append(binding)
            self._cond.notify_all()
        return Reply(201, fixture("binding-create.json"))

    def _create_event(self, req: Recorded) -> Reply:
        event = req.json()
        if not str(event.get("eventTime", "")).split(".")[-1][:6].isdigit():
            return Reply(400, fixture("events-v1-create-eventTime-no-micros.json"))
        self.created_events.append(event)
        out = dict(event)
        out["metadata"] = dict(event["metadata"], uid="evt", resourceVersion=self._next_rv())
        return Reply(201, compact(out) + b"\n")


# --- a tiny Lease store for leader-election tests --------------------------------------------

LEASE_GROUP = "coordination.k8s.io"
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_LEASE_SPEC_KEYS = (
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
)


@dataclass
class LeaseWrite:
    """One successful create or update, as the test process saw it arrive."""

    at: float  # time.monotonic() in the test process
    name: str
    verb: Literal["create", "update"]
    holder: str | None
    transitions: int | None
    resource_version: str
    authorization: str


@dataclass
class LeaseStore:
    """Leases held by the fake API server, answering like kube-apiserver (fixtures ``lease-*``).

    GET of a missing Lease is 404; a create of an existing one 409 AlreadyExists; an update needs
    the current ``metadata.resourceVersion`` (stale: 409 Conflict, none: 422 Invalid), and
    ``acquireTime``/``renewTime`` need six fractional digits (else 400). Objects are built from
    the recorded ``lease-create.json`` (same key order); every write is kept in ``writes``.
    """

    api: FakeApiServer
    namespace: str = "lowcarb-system"
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    rv: itertools.count[int] = field(default_factory=lambda: itertools.count(500))
    writes: list[LeaseWrite] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def collection(self) -> str:
        return f"/apis/{LEASE_GROUP}/v1/namespaces/{self.namespace}/leases"

    def install(self, *names: str) -> LeaseStore:
        """Answer for the Leases ``names`` (routes are per path, as the fake server's are)."""
        self.api.add("POST", self.collection, self._create)
        for name in names:
            self.api.add("GET", f"{self.collection}/{name}", self._get)
            self.api.add("PUT", f"{self.collection}/{name}", self._update)
        return self

    def holder(self, name: str) -> str | None:
        with self._lock:
            lease = self.leases.get(name)
            return None if lease is None else lease["spec"].get("holderIdentity")

    def _details(self, name: str) -> dict[str, Any]:
        return {"name": name, "group": LEASE_GROUP, "kind": "leases"}

    def _not_found(self, name: str) -> Reply:
        msg = f'leases.{LEASE_GROUP} "{name}" not found'
        return Reply(404, _status(404, "NotFound", msg, self._details(name)))

    def _bad_time(self, lease: dict[str, Any]) -> Reply | None:
        for key in ("acquireTime", "renewTime"):
            value = lease.get("spec", {}).get(key)
            if value is not None and not _MICRO_TIME.match(str(value)):
                msg = (
                    f'Lease in version "v1" cannot be handled as a Lease: parsing time "{value}" '
                    'as "2006-01-02T15:04:05.000000Z07:00": cannot parse the fraction'
                )
                return Reply(400, _status(400, "BadRequest", msg))
        return None

    def _stored(
        self, name: str, spec: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The object as the API server returns it: the recorded shape, our values."""
        obj: dict[str, Any] = json.loads(fixture("lease-create.json"))
        meta = obj["metadata"]
        meta["name"], meta["namespace"] = name, self.namespace
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        else:
            meta["uid"] = f"lease-{name}"
        meta["resourceVersion"] = str(next(self.rv))
        fields: dict[str, Any] = {
            f"f:{k}": {} for k in sorted(_LEASE_SPEC_KEYS) if spec.get(k) is not None
        }
        meta["managedFields"][0]["fieldsV1"] = {"f:spec": fields}
        obj["spec"] = {k: spec[k] for k in _LEASE_SPEC_KEYS if spec.get(k) is not None}
        return obj

    def _record(
        self, req: Recorded, obj: dict[str, Any], verb: Literal["create", "update"]
    ) -> None:
        spec = obj["spec"]
        self.writes.append(
            LeaseWrite(
                time.monotonic(),
                obj["metadata"]["name"],
                verb,
                spec.get("holderIdentity"),
                spec.get("leaseTransitions"),
                obj["metadata"]["resourceVersion"],
                req.authorization,
            )
        )

    def _get(self, req: Recorded) -> Reply:
        name = req.path.rsplit("/", 1)[1]
        with self._lock:
            lease = self.leases.get(name)
            if lease is None:
                return self._not_found(name)
            return Reply(200, compact(lease) + b"\n")

    def _create(self, req: Recorded) -> Reply:
        body = req.json()
        name = body["metadata"]["name"]
        bad = self._bad_time(body)
        if bad is not None:
            return bad
        with self._lock:
            if name in self.leases:
                msg = f'leases.{LEASE_GROUP} "{name}" already exists'
                return Reply(409, _status(409, "AlreadyExists", msg, self._details(name)))
            obj = self.leases[name] = self._stored(name, body.get("spec") or {}, None)
            self._record(req, obj, "create")
            return Reply(201, compact(obj) + b"\n")

    def _update(self, req: Recorded) -> Reply:
        name = req.path.rsplit("/", 1)[1]
        body = req.json()
        bad = self._bad_time(body)
        if bad is not None:
            return bad
        with self._lock:
            old = self.leases.get(name)
            if old is None:
                return self._not_found(name)
            sent = body.get("metadata", {}).get("resourceVersion")
            if not sent:
                text = fixture("lease-update-no-rv.json").replace(
                    b'"lowcarb-gates"', json.dumps(name).encode()
                )
                return Reply(422, text)
            if sent != old["metadata"]["resourceVersion"]:
                msg = (
                    f'Operation cannot be fulfilled on leases.{LEASE_GROUP} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try "
                    "again"
                )
                return Reply(409, _status(409, "Conflict", msg, self._details(name)))
            obj = self.leases[name] = self._stored(name, body.get("spec") or {}, old)
            self._record(req, obj, "update")
            return Reply(200, compact(obj) + b"\n")


def _merge_strings(meta: dict[str, Any], key: str, values: dict[str, Any] | None) -> None:
    """Merge ``values`` into ``meta[key]`` (a string map); ``None`` removes a key (RFC 7386)."""
    if not values:
        return
    merged = dict(meta.get(key) or {})
    for k, v in values.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    meta[key] = merged


def _state_at(
    pods: dict[str, dict[str, Any]], events: list[tuple[str, dict[str, Any]]], rv: int
) -> dict[str, dict[str, Any]]:
    """The pods by uid as they were at resourceVersion ``rv``: unchanged since, or as their last
    event at or before ``rv`` left them."""
    state = {
        p["metadata"]["uid"]: p
        for p in pods.values()
        if int(p["metadata"]["resourceVersion"]) <= rv
    }
    last: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, obj in events:
        if int(obj["metadata"]["resourceVersion"]) <= rv:
            last[obj["metadata"]["uid"]] = (kind, obj)
    for uid, (kind, obj) in last.items():
        if uid not in state and kind != "DELETED":
            state[uid] = obj
    return state


def field_selector(text: str) -> Callable[[dict[str, Any]], bool]:
    """A pod predicate for a ``fieldSelector`` such as ``spec.nodeName!=,status.phase!=Failed``."""
    terms: list[tuple[list[str], bool, str]] = []
    for part in filter(None, text.split(",")):
        negate = "!=" in part
        key, value = part.split("!=" if negate else "=", 1)
        terms.append((key.strip().split("."), negate, value))

    def get(obj: dict[str, Any], path: list[str]) -> str:
        for key in path:
            obj = obj.get(key) or {}
        return obj if isinstance(obj, str) else ""

    return lambda obj: all((get(obj, path) == value) != negate for path, negate, value in terms)


def _resolve(doc: Any, path: str) -> tuple[Any, str] | None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    for part in parts[:-1]:
        if isinstance(doc, list):
            if not part.isdigit() or int(part) >= len(doc):
                return None
            doc = doc[int(part)]
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return None
    return doc, parts[-1]


def _apply_op(doc: dict[str, Any], op: dict[str, Any]) -> bool:
    found = _resolve(doc, op["path"])
    if found is None:
        return False
    parent, key = found
    if isinstance(parent, list):
        if not key.isdigit() or int(key) >= len(parent):
            return False
        idx = int(key)
        if op["op"] == "test":
            return bool(parent[idx] == op["value"])
        if op["op"] == "remove":
            del parent[idx]
            return True
        return False
    if not isinstance(parent, dict) or key not in parent:
        return False
    if op["op"] == "test":
        return bool(parent[key] == op["value"])
    if op["op"] == "remove":
        del parent[key]
        return True
    return False


def assigned_nonterminal(obj: dict[str, Any]) -> bool:
    """``spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed`` evaluated on a Pod."""
    phase = obj.get("status", {}).get("phase")
    return bool(obj.get("spec", {}).get("nodeName")) and phase not in ("Succeeded", "Failed")


def filter_watch(lines: list[bytes], selector: Callable[[dict[str, Any]], bool]) -> list[bytes]:
    """What a watch with a field selector sends for recorded unfiltered events.

    The API server turns an object entering the selection into ADDED and one leaving it into
    DELETED; objects outside it are not sent. Object bytes are kept exactly as recorded.
    """
    out: list[bytes] = []
    inside: set[str] = set()
    prefix = b'{"type":"'
    for line in lines:
        event = json.loads(line)
        kind = event["type"]
        start = line.index(b'"object":') + len(b'"object":')
        raw = line[start:].rstrip(b"\n")[:-1]  # drop the closing brace of the event
        if kind in ("BOOKMARK", "ERROR"):
            out.append(line)
            continue
        uid = event["object"]["metadata"].get("uid", "")
        was, now = uid in inside, kind != "DELETED" and selector(event["object"])
        if now:
            inside.add(uid)
            new_kind = "MODIFIED" if was else "ADDED"
        elif was:
            inside.discard(uid)
            new_kind = "DELETED"
        else:
            continue
        out.append(prefix + new_kind.encode() + b'","object":' + raw + b"}\n")
    return out
