"""TLS to the API server: CA and client certificate from a kubeconfig, verified for real."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from scheduler import kube
from tests.support.fakeapi import FakeApiServer, Reply, fixture


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def api(ca: trustme.CA) -> Iterator[FakeApiServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as an API server with x509 client auth
    server = FakeApiServer(tls=ctx).start()
    server.add(
        "GET", "/api/v1/namespaces/e2e/pods/train-h100", Reply(200, fixture("pods-get.json"))
    )
    yield server
    server.stop()


def kubeconfig(path: Path, server: str, ca_pem: bytes, cert: trustme.LeafCert) -> Path:
    key = cert.private_key_pem.bytes()
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{server}', "
        f"certificate-authority-data: {b64(ca_pem)}}}}}]\n"
        f"users: [{{name: u, user: {{client-certificate-data: {b64(chain)}, "
        f"client-key-data: {b64(key)}}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return path


async def test_client_certificate_and_ca_from_kubeconfig(
    api: FakeApiServer, ca: trustme.CA, tmp_path: Path
) -> None:
    client_cert = ca.issue_cert("lowcarb@example.invalid")
    cfg = kube.load_config(
        str(kubeconfig(tmp_path / "kc", api.url, ca.cert_pem.bytes(), client_cert))
    )
    assert cfg.host.startswith("https://") and cfg.ca_file and cfg.cert_file
    client = kube.KubeClient(cfg)
    try:
        pod = await client.get_pod("e2e", "train-h100")
    finally:
        await client.aclose()
    assert pod.spec.nodeName == "usw2-a-gpu"


async def test_unknown_server_ca_is_refused(
    api: FakeApiServer, ca: trustme.CA, tmp_path: Path
) -> None:
    other = trustme.CA()
    client_cert = ca.issue_cert("lowcarb@example.invalid")
    cfg = kube.load_config(
        str(kubeconfig(tmp_path / "kc", api.url, other.cert_pem.bytes(), client_cert))
    )
    client = kube.KubeClient(cfg)
    try:
        with pytest.raises(kube.ApiUnavailable) as info:
            await client.get_pod("e2e", "train-h100")
        assert str(info.value).startswith(
            "GET /api/v1/namespaces/e2e/pods/train-h100: TLS: the API server's certificate is "
            "not trusted by the kubeconfig's certificate-authority, or does not name its host ("
        )
    finally:
        await client.aclose()
    assert api.requests == []


async def test_insecure_skip_verify_still_presents_the_client_certificate(
    api: FakeApiServer, ca: trustme.CA, tmp_path: Path
) -> None:
    client_cert = ca.issue_cert("lowcarb@example.invalid")
    key = client_cert.private_key_pem.bytes()
    chain = b"".join(blob.bytes() for blob in client_cert.cert_chain_pems)
    path = tmp_path / "kc"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{api.url}', "
        "insecure-skip-tls-verify: true}}]\n"
        f"users: [{{name: u, user: {{client-certificate-data: {b64(chain)}, "
        f"client-key-data: {b64(key)}}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    cfg = kube.load_config(str(path))
    assert cfg.verify is False
    client = kube.KubeClient(cfg)
    try:
        pod = await client.get_pod("e2e", "train-h100")  # the server requires a client cert
    finally:
        await client.aclose()
    assert pod.metadata.name == "train-h100"
