"""A real Kubernetes control plane on loopback for the e2e tests and the throughput benchmark.

:class:`ControlPlane` starts etcd (data on tmpfs when available), kube-apiserver (a CA and serving
certificate, a static token file, an RSA service-account key pair, ``--authorization-mode=
Node,RBAC``) and, on demand, kube-scheduler processes whose ``KubeSchedulerConfiguration`` carries
the extender entry ``deploy/`` ships (:func:`shipped_extender`), all on free 127.0.0.1 ports in a
temporary folder. It also installs lowcarb's identity exactly as ``deploy/`` ships it.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.kubeapi import KubeApi, make_pki, write_kubeconfig
from tests.e2e.procs import Proc, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SCHEDULER_CONFIG = REPO / "deploy" / "kube-scheduler-config.yaml"
SHIPPED_RBAC = REPO / "deploy" / "kustomize" / "base" / "rbac-lowcarb.yaml"
SHIPPED_SERVICEACCOUNT = REPO / "deploy" / "kustomize" / "base" / "serviceaccount.yaml"
SHIPPED_POLICY = REPO / "policies" / "default.yaml"


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
    percentage: int | None = None,
) -> dict[str, Any]:
    """A KubeSchedulerConfiguration like the shipped one (client QPS, score 100 % of nodes);
    ``percentage`` overrides percentageOfNodesToScore (0: kube-scheduler's adaptive default)."""
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
        "percentageOfNodesToScore": percentage
        if percentage is not None
        else shipped.get("percentageOfNodesToScore", 100),
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
        percentage: int | None = None,
    ) -> Proc:
        """A kube-scheduler serving the profiles ``scheduler_names``; waits for /readyz."""
        config = scheduler_config(
            self.scheduler_kubeconfig,
            scheduler_names,
            extenders,
            qps=qps,
            burst=burst,
            percentage=percentage,
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
