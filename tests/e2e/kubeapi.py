"""A small synchronous Kubernetes API client (httpx, bearer token, the cluster CA) with the calls
the e2e tests make, and the credentials a test control plane needs: a CA and serving certificate
(trustme), a service-account RSA key pair and kubeconfig files."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml


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
            "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{meta.get('namespace')}/roles",
            "RoleBinding": (
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{meta.get('namespace')}/rolebindings"
            ),
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
