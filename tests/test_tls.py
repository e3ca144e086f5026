"""TLS: `lowcarb serve` over HTTPS, and with --client-ca only clients with a valid certificate."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.fakeapi import free_port
from tests.support.serve import listening, serve_processes, wait_ready

FIXTURE = (
    Path(__file__).parent / "fixtures" / "deploy" / "prioritize.args.nodeCacheCapable-false.json"
)


@dataclass(frozen=True)
class Pki:
    """A server CA and certificate, a client CA with a client certificate, and a rogue CA."""

    server_ca: trustme.CA
    client_ca: trustme.CA
    rogue_ca: trustme.CA
    server_cert: Path
    server_key: Path
    client_ca_file: Path
    client: trustme.LeafCert
    rogue_client: trustme.LeafCert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server_cert, server_key = directory / "tls.crt", directory / "tls.key"
    with server_cert.open("wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    server.private_key_pem.write_to_path(str(server_key))
    client_ca_file = directory / "client-ca.crt"
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    return Pki(
        server_ca=server_ca,
        client_ca=client_ca,
        rogue_ca=rogue_ca,
        server_cert=server_cert,
        server_key=server_key,
        client_ca_file=client_ca_file,
        client=client_ca.issue_cert("kube-scheduler"),
        rogue_client=rogue_ca.issue_cert("kube-scheduler"),
    )


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start `lowcarb serve` with extra flags on a free loopback port; returns its port."""
    with serve_processes(tmp_path_factory.mktemp("logs")) as procs:

        def start(*flags: str) -> int:
            port = free_port()
            process, log = procs.start("--port", str(port), *flags)
            wait_ready(process, log, listening(port), f"listening on {port}")
            return port

        yield start


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception (httpx wraps httpcore, which wraps ssl): its type is the
    contract, the transport's message text is not."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def client_context(trusted: trustme.CA | None, cert: trustme.LeafCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if trusted is not None:
        trusted.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    return context


@pytest.fixture(scope="module")
def https_port(serve: object, pki: Pki) -> int:
    start = serve
    assert callable(start)
    port: int = start("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    return port


@pytest.fixture(scope="module")
def mtls_port(serve: object, pki: Pki) -> int:
    start = serve
    assert callable(start)
    port: int = start(
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--client-ca",
        str(pki.client_ca_file),
    )
    return port


def prioritize(port: int, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.post(f"https://127.0.0.1:{port}/prioritize", content=FIXTURE.read_bytes())


def assert_prioritize_answer(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    scores = response.json()
    sent = [n["metadata"]["name"] for n in json.loads(FIXTURE.read_bytes())["Nodes"]["items"]]
    # the nodes scoring above 0 (kube-scheduler adds nothing for a host left out)
    assert scores and {item["Host"] for item in scores} <= set(sent)
    assert all(0 < item["Score"] <= 10 for item in scores)


def test_https_serves_a_client_that_trusts_the_ca(https_port: int, pki: Pki) -> None:
    context = client_context(pki.server_ca, None)
    with httpx.Client(verify=context, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{https_port}/healthz").status_code == 200
    assert_prioritize_answer(prioritize(https_port, context))


def test_https_is_refused_by_a_client_that_does_not_trust_the_ca(https_port: int, pki: Pki) -> None:
    with pytest.raises(httpx.ConnectError) as info:
        prioritize(https_port, client_context(pki.rogue_ca, None))
    assert isinstance(root_cause(info.value), ssl.SSLCertVerificationError)


def test_plain_http_gets_no_answer_from_the_tls_port(https_port: int) -> None:
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.TransportError):
        client.get(f"http://127.0.0.1:{https_port}/healthz")


def test_mutual_tls_lets_a_valid_client_certificate_through(mtls_port: int, pki: Pki) -> None:
    assert_prioritize_answer(prioritize(mtls_port, client_context(pki.server_ca, pki.client)))


def test_mutual_tls_refuses_a_client_without_certificate(mtls_port: int, pki: Pki) -> None:
    with pytest.raises(httpx.TransportError):
        prioritize(mtls_port, client_context(pki.server_ca, None))


def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls_port: int, pki: Pki) -> None:
    with pytest.raises(httpx.TransportError):
        prioritize(mtls_port, client_context(pki.server_ca, pki.rogue_client))


def test_mutual_tls_still_serves_after_refusals(mtls_port: int, pki: Pki) -> None:
    for cert in (None, pki.rogue_client):
        with pytest.raises(httpx.TransportError):
            prioritize(mtls_port, client_context(pki.server_ca, cert))
    context = client_context(pki.server_ca, pki.client)
    with httpx.Client(verify=context, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{mtls_port}/readyz").status_code == 200
