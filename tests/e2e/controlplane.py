"""A real Kubernetes control plane on loopback for end-to-end tests and the throughput benchmark.

:class:`ControlPlane` starts etcd (data on tmpfs when available), kube-apiserver (a CA and serving
certificate from ``trustme``, a static token file, an RSA service-account key pair,
``--authorization-mode=Node,RBAC``) and, on demand, kube-scheduler processes whose
``KubeSchedulerConfiguration`` carries the extender entry ``deploy/`` ships, pointed at a lowcarb on
loopback. :class:`Lowcarb` runs ``lowcarb serve`` as a subprocess (lowcarb is only reached through
its CLI and HTTP endpoints). Every process gets its own process group and is killed with it, also
on failure and at interpreter exit. :class:`KubeApi` is a small synchronous client (httpx, bearer
token) with the calls the tests need; :func:`gpu_node` / :func:`gpu_pod` build the objects.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SCHEDULER_CONFIG = REPO / "deploy" / "kube-scheduler-config.yaml"
SHIPPED_RBAC = REPO / "deploy" / "kustomize" / "base" / "rbac-lowcarb.yaml"
SHIPPED_SERVICEACCOUNT = REPO / "deploy" / "kustomize" / "base" / "serviceaccount.yaml"
SHIPPED_POLICY = REPO / "policies" / "default.yaml"

POOL_LABEL = "e2e.lowcarb.dev/pool"
REGION_LABEL = "topology.kubernetes.io/region"
PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU = "nvidia.com/gpu"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


# --- processes ----------------------------------------------------------------------------------

_LIVE: set[Proc] = set()


def _kill_all_at_exit() -> None:
    for proc in list(_LIVE):
        proc.kill()


atexit.register(_kill_all_at_exit)


@dataclass(eq=False)
class Proc:
    """One child process in its own process group, output to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )
        finally:
            log.close()
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group (no clean-up by the process)."""
        if self.popen is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        _LIVE.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            code = self.popen.returncode if self.popen else None
            raise RuntimeError(
                f"{self.name} exited (code {code}); last log lines:\n{self.log_tail()}"
            )


# --- API client ---------------------------------------------------------------------------------


class ApiStatusError(RuntimeError):
    def __init__(self, code: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {code}: {body[:400]}")
        self.code = code


class KubeApi:
    """Synchronous kube-apiserver client with a bearer token (thread-safe; one pool)."""

    def __init__(self, server: str, token: str, ca_file: Path, timeout: float = 30.0) -> None:
        self.server = server
        self.token = token
        self.ca_file = ca_file
        self.http = httpx.Client(
            base_url=server,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        ok: Sequence[int] = (),
    ) -> Any:
        """JSON in, JSON out; a status outside 2xx (and not in ``ok``) raises ApiStatusError."""
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        resp = self.http.request(method, path, content=content, params=params, headers=headers)
        if resp.status_code >= 300 and resp.status_code not in ok:
            raise ApiStatusError(resp.status_code, method, path, resp.text)
        return resp.json() if resp.content else None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any, ok: Sequence[int] = ()) -> Any:
        return self.request("POST", path, body, ok=ok)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, ok: Sequence[int] = (404,)) -> Any:
        return self.request("DELETE", path, ok=ok)

    # -- objects the tests use --

    def ensure_namespace(self, name: str) -> None:
        self.post("/api/v1/namespaces", {"metadata": {"name": name}}, ok=(409,))
        # no controller manager runs: the ServiceAccount admission plugin needs "default"
        sa = {"metadata": {"name": "default"}}
        self.post(f"/api/v1/namespaces/{name}/serviceaccounts", sa, ok=(409,))

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        ns = pod["metadata"]["namespace"]
        created: dict[str, Any] = self.post(f"/api/v1/namespaces/{ns}/pods", pod)
        return created

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return got

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        items: list[dict[str, Any]] = self.get(f"/api/v1/namespaces/{namespace}/pods", **params)[
            "items"
        ]
        return items

    def events(self, namespace: str, involved: str | None = None) -> list[dict[str, Any]]:
        params = {"fieldSelector": f"involvedObject.name={involved}"} if involved else {}
        items: list[dict[str, Any]] = self.get(f"/api/v1/namespaces/{namespace}/events", **params)[
            "items"
        ]
        return items

    def create_node(self, node: dict[str, Any]) -> None:
        """Create a node, set its status (capacity, Ready) and lift the not-ready taint."""
        name = node["metadata"]["name"]
        self.post("/api/v1/nodes", {"metadata": node["metadata"], "spec": node.get("spec", {})})
        self.merge_patch(f"/api/v1/nodes/{name}/status", {"status": node["status"]})
        # TaintNodesByCondition put node.kubernetes.io/not-ready on it and no lifecycle
        # controller runs to lift it
        self.merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": None}})

    def create_nodes(self, nodes: Sequence[dict[str, Any]], parallel: int = 16) -> None:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(self.create_node, nodes))

    def service_account_token(self, namespace: str, name: str, seconds: int = 7200) -> str:
        review = self.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return str(review["status"]["token"])

    def apply_manifest(self, doc: dict[str, Any]) -> None:
        """Create one object of the few kinds ``deploy/`` uses for lowcarb's identity."""
        kind, meta = doc["kind"], doc["metadata"]
        paths = {
            "Namespace": "/api/v1/namespaces",
            "ServiceAccount": f"/api/v1/namespaces/{meta.get('namespace')}/serviceaccounts",
            "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        }
        if kind not in paths:
            raise ValueError(f"apply_manifest: unsupported kind {kind}")
        self.post(paths[kind], doc)


# --- certificates, tokens, kubeconfigs ----------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    sa_key: Path
    sa_pub: Path


def make_pki(directory: Path) -> Pki:
    import trustme
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(
        ca=directory / "ca.crt",
        cert=directory / "apiserver.crt",
        key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    server.cert_chain_pems[0].write_to_path(str(pki.cert))
    server.private_key_pem.write_to_path(str(pki.key))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.sa_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pki.sa_pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str = "e2e") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# --- scheduler configuration --------------------------------------------------------------------


def shipped_extender(
    url: str, *, node_cache_capable: bool = True, bind: bool = True, **overrides: Any
) -> dict[str, Any]:
    """The extender entry of ``deploy/kube-scheduler-config.yaml``, pointed at ``url``."""
    shipped = yaml.safe_load(SHIPPED_SCHEDULER_CONFIG.read_text())
    ext: dict[str, Any] = copy.deepcopy(shipped["extenders"][0])
    ext["urlPrefix"] = url
    ext["nodeCacheCapable"] = node_cache_capable
    if not bind:
        ext.pop("bindVerb", None)
    ext.update(overrides)
    return ext


def scheduler_config(
    kubeconfig: Path,
    scheduler_names: Sequence[str],
    extenders: Sequence[dict[str, Any]] = (),
    *,
    qps: float | None = None,
    burst: int | None = None,
) -> dict[str, Any]:
    """A KubeSchedulerConfiguration like the shipped one (client QPS, score 100 % of nodes)."""
    shipped = yaml.safe_load(SHIPPED_SCHEDULER_CONFIG.read_text())
    conn = shipped.get("clientConnection", {})
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(kubeconfig),
            "qps": qps if qps is not None else conn.get("qps", 50),
            "burst": burst if burst is not None else conn.get("burst", 100),
        },
        "leaderElection": {"leaderElect": False},
        "percentageOfNodesToScore": shipped.get("percentageOfNodesToScore", 100),
        "profiles": [{"schedulerName": n} for n in scheduler_names],
        "extenders": list(extenders),
    }


# --- the control plane --------------------------------------------------------------------------

ADMIN_TOKEN_USER = "e2e-admin"
SCHEDULER_USER = "system:kube-scheduler"  # bound by the API server's bootstrap RBAC policy


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-scheduler processes) on free loopback ports."""

    bin_dir: Path
    workdir: Path
    authorization: str = "Node,RBAC"
    procs: list[Proc] = field(default_factory=list)
    schedulers: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.workdir
        self.etcd_dir = Path(tempfile.mkdtemp(prefix="lowcarb-e2e-etcd-", dir=base))
        self.admin_token = uuid.uuid4().hex
        self.scheduler_token = uuid.uuid4().hex
        self.etcd_port, self.peer_port, self.api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.pki = make_pki(self.workdir)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},{ADMIN_TOKEN_USER},uid-admin,"system:masters"\n'
            f"{self.scheduler_token},{SCHEDULER_USER},uid-scheduler\n"
        )
        tokens.chmod(0o600)
        self.tokens_file = tokens
        self.admin_kubeconfig = write_kubeconfig(
            self.workdir / "admin.kubeconfig", self.server, self.pki.ca, self.admin_token
        )
        self.scheduler_kubeconfig = write_kubeconfig(
            self.workdir / "scheduler.kubeconfig",
            self.server,
            self.pki.ca,
            self.scheduler_token,
            "kube-scheduler",
        )
        self.etcd: Proc | None = None
        self.apiserver: Proc | None = None
        self._api: KubeApi | None = None

    # -- lifecycle --

    def start(self) -> ControlPlane:
        try:
            self._start_etcd()
            self._start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.etcd = self._proc(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=e2e",
                f"--data-dir={self.etcd_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--initial-cluster-state=new",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            assert self.etcd is not None
            self.etcd.check_alive()
            return bool(httpx.get(f"{client}/health", timeout=2).json().get("health") == "true")

        wait_until("etcd /health", healthy, 30)

    def _apiserver_argv(self) -> list[str]:
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={self.pki.cert}",
            f"--tls-private-key-file={self.pki.key}",
            f"--client-ca-file={self.pki.ca}",
            f"--token-auth-file={self.tokens_file}",
            f"--authorization-mode={self.authorization}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.sa_pub}",
            f"--service-account-signing-key-file={self.pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            "--profiling=false",
            "--v=0",
        ]

    def _start_apiserver(self) -> None:
        self.apiserver = self._proc("kube-apiserver", self._apiserver_argv())
        api = self.api

        def ready() -> bool:
            assert self.apiserver is not None
            self.apiserver.check_alive()
            resp = api.http.get("/readyz", timeout=5)
            return resp.status_code == 200

        wait_until("kube-apiserver /readyz", ready, 90, interval=0.25)

    def restart_apiserver(self, down_s: float = 1.0) -> float:
        """Stop kube-apiserver (SIGTERM) and start it again on the same port; returns downtime."""
        assert self.apiserver is not None
        started = time.monotonic()
        self.apiserver.stop()
        self.procs.remove(self.apiserver)
        time.sleep(down_s)
        self._start_apiserver()
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=5)
        self.procs.clear()
        self.schedulers.clear()
        if self._api is not None:
            self._api.close()
            self._api = None
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def _proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.workdir / f"{name}.log", env=env).start()
        self.procs.append(proc)
        return proc

    # -- clients --

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.server, self.admin_token, self.pki.ca)
        return self._api

    def client(self, token: str) -> KubeApi:
        return KubeApi(self.server, token, self.pki.ca)

    def kubeconfig(self, name: str, token: str) -> Path:
        path = self.workdir / f"{name}.kubeconfig"
        return write_kubeconfig(path, self.server, self.pki.ca, token)

    # -- kube-scheduler --

    def start_scheduler(
        self,
        name: str,
        scheduler_names: Sequence[str],
        extenders: Sequence[dict[str, Any]] = (),
        *,
        qps: float | None = None,
        burst: int | None = None,
        verbosity: int = 1,
    ) -> Proc:
        """A kube-scheduler serving the profiles ``scheduler_names``; waits for /readyz."""
        config = scheduler_config(
            self.scheduler_kubeconfig, scheduler_names, extenders, qps=qps, burst=burst
        )
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = self._proc(
            name,
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--config={path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--v={verbosity}",
            ],
        )
        self.schedulers[name] = proc

        def ready() -> bool:
            proc.check_alive()
            resp = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=False, timeout=2)
            return resp.status_code == 200

        wait_until(f"{name} /readyz", ready, 60, interval=0.2)
        return proc

    def stop_scheduler(self, name: str) -> None:
        proc = self.schedulers.pop(name)
        proc.stop(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    # -- lowcarb's identity, as deploy/ ships it --

    def install_lowcarb_rbac(self) -> tuple[str, str, list[dict[str, Any]]]:
        """Apply deploy/'s ServiceAccount and rbac-lowcarb.yaml; return (namespace, token, docs)."""
        sa = yaml.safe_load(SHIPPED_SERVICEACCOUNT.read_text())
        namespace = sa["metadata"]["namespace"]
        self.api.post("/api/v1/namespaces", {"metadata": {"name": namespace}}, ok=(409,))
        self.api.apply_manifest(sa)
        docs = [d for d in yaml.safe_load_all(SHIPPED_RBAC.read_text()) if d]
        for doc in docs:
            self.api.apply_manifest(doc)
        token = self.api.service_account_token(namespace, sa["metadata"]["name"])
        return namespace, token, docs


# --- lowcarb ------------------------------------------------------------------------------------


def lowcarb_executable() -> str:
    exe = Path(sys.executable).with_name("lowcarb")
    if exe.exists():
        return str(exe)
    found = shutil.which("lowcarb")
    if found is None:
        raise RuntimeError("lowcarb is not installed in this environment: pip install -e .")
    return found


@dataclass(eq=False)
class Lowcarb:
    """``lowcarb serve`` in cluster mode as a subprocess (restartable on the same port)."""

    workdir: Path
    kubeconfig: Path
    policy: Path | None = None
    ledger: Path | None = None
    port: int = field(default_factory=free_port)
    name: str = "lowcarb"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    proc: Proc | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [
            lowcarb_executable(),
            "serve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--kubeconfig={self.kubeconfig}",
            "--log-level=info",
        ]
        if self.policy is not None:
            argv.append(f"--policy={self.policy}")
        if self.ledger is not None:
            argv.append(f"--ledger={self.ledger}")
        return argv + self.extra_args

    def start(self, wait: bool = True) -> Lowcarb:
        self.starts += 1
        self.proc = Proc(self.name, self.argv(), self.workdir / f"{self.name}.log", env=self.env)
        self.proc.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            self.proc.check_alive()
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        wait_until(f"{self.name} /readyz", ready, timeout, interval=0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total


class DelayProxy:
    """HTTP forwarder in front of an extender that holds chosen verbs for a while.

    kube-scheduler sends ``bind`` from an asynchronous binding cycle while it already schedules
    the next pod; a delay on ``/bind`` makes "the next pod's filter/prioritize arrives before
    this pod's bind" certain instead of a matter of luck.
    """

    def __init__(self, target: str, delays: Mapping[str, float]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.target = target
        self.delays = dict(delays)
        self.client = httpx.Client(base_url=target, timeout=30, trust_env=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                verb = self.path.rstrip("/").rsplit("/", 1)[-1]
                time.sleep(proxy.delays.get(verb, 0.0))
                try:
                    resp = proxy.client.post(
                        self.path,
                        content=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "")},
                    )
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


# --- object builders ----------------------------------------------------------------------------


def gpu_node(
    name: str,
    *,
    region: str,
    product: str = "NVIDIA-A100-SXM4-80GB",
    gpus: int = 8,
    replicas: int = 1,
    memory_mib: int = 81920,
    pool: str = "",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A GPU node as GPU Feature Discovery and the device plugin would describe it."""
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        REGION_LABEL: region,
        "topology.kubernetes.io/zone": f"{region}a",
        PRODUCT_LABEL: product,
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.count": str(gpus),
    }
    if replicas > 1:
        all_labels["nvidia.com/gpu.replicas"] = str(replicas)
    if pool:
        all_labels[POOL_LABEL] = pool
    all_labels.update(labels or {})
    resources = {"cpu": "96", "memory": "1024Gi", "pods": "110", GPU: str(gpus * replicas)}
    if gpus == 0:
        del resources[GPU]
    return {
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "e2e node",
                    "lastHeartbeatTime": _now_rfc3339(),
                    "lastTransitionTime": _now_rfc3339(),
                }
            ],
        },
    }


def gpu_pod(
    name: str,
    namespace: str,
    *,
    gpus: int = 1,
    milli: int | None = None,
    scheduler: str = "lowcarb",
    pool: str | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    gates: Iterable[str] = (),
) -> dict[str, Any]:
    """A pod asking for ``gpus`` GPUs (``milli`` of one shared GPU), scheduled by ``scheduler``."""
    ann = dict(annotations or {})
    if milli is not None:
        ann["lowcarb.dev/gpu-milli"] = str(milli)
    selector = dict(node_selector or {})
    if pool:
        selector[POOL_LABEL] = pool
    limits = {GPU: str(gpus)} if gpus else {}
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [
            {
                "name": "main",
                "image": PAUSE_IMAGE,
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi", **limits},
                    "limits": limits,
                },
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if selector:
        spec["nodeSelector"] = selector
    gate_list = [{"name": g} for g in gates]
    if gate_list:
        spec["schedulingGates"] = gate_list
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": ann,
        },
        "spec": spec,
    }


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- waiting on pods ----------------------------------------------------------------------------


def node_of(pod: Mapping[str, Any]) -> str:
    return str(pod.get("spec", {}).get("nodeName") or "")


def wait_bound(
    api: KubeApi, namespace: str, names: Iterable[str], timeout: float = 60
) -> dict[str, dict[str, Any]]:
    """Wait until every named pod has ``spec.nodeName``; return them by name."""
    wanted = set(names)

    def check() -> dict[str, dict[str, Any]] | None:
        pods = {p["metadata"]["name"]: p for p in api.pods(namespace)}
        if all(node_of(pods.get(n, {})) for n in wanted):
            return {n: pods[n] for n in wanted}
        return None

    try:
        return wait_until(f"pods {sorted(wanted)} to be bound", check, timeout, interval=0.2)
    except TimeoutError:
        pods = {p["metadata"]["name"]: p for p in api.pods(namespace)}
        unbound = sorted(n for n in wanted if not node_of(pods.get(n, {})))
        reasons = {n: scheduling_messages(api, namespace, n)[-1:] for n in unbound[:5]}
        raise TimeoutError(f"pods not bound after {timeout:.0f}s: {unbound}; {reasons}") from None


def scheduling_messages(api: KubeApi, namespace: str, pod: str) -> list[str]:
    """Messages of the FailedScheduling events of ``pod``, oldest first."""
    events = [e for e in api.events(namespace, pod) if e.get("reason") == "FailedScheduling"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [str(e.get("message", "")) for e in events]


def unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The PodScheduled=False condition's message when the pod is Unschedulable."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message", ""))
    return None


@contextlib.contextmanager
def timed(label: str, sink: dict[str, float] | None = None) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        if sink is not None:
            sink[label] = time.monotonic() - started
