"""``lowcarb serve --health-port``: probes over plain HTTP on their own listener while the main
one requires client certificates (the extender-only deployment), readiness meaning the node and
pod cache synced; the probe port serves nothing else; a clash is one clear line, exit 2."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.fakeapi import (
    FakeApiServer,
    fixture,
    free_port,
    hold_first_pod_list,
    lowcarb_command,
    write_kubeconfig,
)

from .conftest import wait_for


@dataclass(frozen=True)
class Pki:
    flags: list[str]  # --tls-cert/--tls-key/--client-ca for lowcarb serve
    server_ca: trustme.CA
    client: trustme.LeafCert  # signed by the client CA


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1")
    cert, key, ca = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "client-ca.crt"
    with cert.open("wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    server.private_key_pem.write_to_path(str(key))
    client_ca.cert_pem.write_to_path(str(ca))
    return Pki(
        flags=["--tls-cert", str(cert), "--tls-key", str(key), "--client-ca", str(ca)],
        server_ca=server_ca,
        client=client_ca.issue_cert("kube-scheduler"),
    )


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, threading.Event]]:
    """A fake API server whose first pod list waits for the event: the cache is not synced
    until the test says so."""
    server = FakeApiServer().start()
    release = hold_first_pod_list(server)
    yield server, release
    release.set()
    server.stop()


def wait_status(client: httpx.Client, url: str, want: int, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(url)
        if answer.status_code == want or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


@pytest.mark.slow
def test_probes_over_plain_http_while_the_main_port_wants_client_certificates(
    lowcarb_serve: Callable[..., subprocess.Popen[bytes]],
    api: tuple[FakeApiServer, threading.Event],
    pki: Pki,
    tmp_path: Path,
) -> None:
    server, release = api
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    port, probes = free_port(), free_port()
    process = lowcarb_serve(
        "--port", str(port), "--health-port", str(probes), "--kubeconfig", str(kubeconfig),
        *pki.flags,
    )  # fmt: skip
    health = f"http://127.0.0.1:{probes}"
    wait_for(f"{health}/healthz", process, tmp_path / "serve.log")
    with httpx.Client(base_url=health, timeout=5) as plain:
        assert plain.get("/healthz").text == "ok"
        not_ready = plain.get("/readyz")
        assert not_ready.status_code == 503
        assert "sync" in not_ready.text  # the reason, in words
        release.set()
        ready = wait_status(plain, "/readyz", 200)
        assert (ready.status_code, ready.text) == (200, "ok")
        metrics = plain.get("/metrics")
        assert metrics.status_code == 200
        assert re.search(r"^lowcarb_pods_filtered_total \S+$", metrics.text, re.M)
        # the probe listener serves the probes and metrics only: no verbs, no docs, no report
        for path in ("/docs", "/openapi.json", "/report", "/explain"):
            answer = plain.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
        assert plain.post("/filter", content=fixture("pods-get.json")).status_code == 404
    # the main listener still wants a client certificate signed by the client CA
    without = ssl.create_default_context()
    pki.server_ca.configure_trust(without)
    with httpx.Client(verify=without, timeout=5) as anonymous, pytest.raises(httpx.TransportError):
        anonymous.get(f"https://127.0.0.1:{port}/readyz")
    with_cert = ssl.create_default_context()
    pki.server_ca.configure_trust(with_cert)
    pki.client.configure_cert(with_cert)
    with httpx.Client(verify=with_cert, timeout=5) as scheduler:
        assert scheduler.get(f"https://127.0.0.1:{port}/readyz").status_code == 200
    # one SIGTERM stops both listeners
    process.terminate()
    assert process.wait(timeout=20) is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{health}/healthz", timeout=2)


def serve_fails(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lowcarb_command(), "serve", "--host", "127.0.0.1", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_port_equal_to_port_is_a_usage_error() -> None:
    port = str(free_port())
    result = serve_fails("--port", port, "--health-port", port)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lowcarb: error: --health-port: {port} is --port too; "
        "give the probes a port of their own, e.g. 8081"
    ]


def test_health_port_in_use_names_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = serve_fails("--port", str(free_port()), "--health-port", str(busy))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"lowcarb: error: --health-port: 127.0.0.1:{busy} is already in use")
