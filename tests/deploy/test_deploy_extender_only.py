"""The extender-only overlay's probes: httpGet on the plain-HTTP --health-port listener (the main
port wants client certificates the kubelet does not have), readiness meaning synced; checked in
the rendered manifest and against ``lowcarb serve`` run with the overlay's own arguments."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.deploy import (
    KUSTOMIZE,
    Manifest,
    build,
    container,
    find,
    flag_value,
    running_lowcarb,
)
from tests.support.fakeapi import (
    FakeApiServer,
    free_port,
    hold_first_pod_list,
    write_kubeconfig,
)

EXTENDER_ONLY = KUSTOMIZE / "overlays" / "extender-only"
PROBES = ("livenessProbe", "readinessProbe")


@pytest.fixture(scope="module")
def lowcarb() -> Manifest:
    return container(find(build(EXTENDER_ONLY), "Deployment", "lowcarb"), "lowcarb")


def test_probes_are_http_on_the_health_port_not_on_the_service(lowcarb: Manifest) -> None:
    args = lowcarb["args"]
    health, main = flag_value(args, "--health-port"), flag_value(args, "--port")
    assert health and main and health != main
    (port,) = [p for p in lowcarb["ports"] if str(p["containerPort"]) == health]
    for probe in PROBES:
        check = lowcarb[probe]
        assert "tcpSocket" not in check and "exec" not in check, probe
        assert check["httpGet"]["port"] == port["name"], probe
        assert check["httpGet"].get("scheme", "HTTP") == "HTTP", probe
    assert lowcarb["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert lowcarb["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = find(build(EXTENDER_ONLY), "Service", "lowcarb")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["https"]


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, threading.Event]]:
    server = FakeApiServer().start()
    release = hold_first_pod_list(server)
    yield server, release
    release.set()
    server.stop()


def overlay_args(lowcarb: Manifest, files: dict[str, Path], kubeconfig: Path) -> list[str]:
    """The container's arguments with its mounted files put where the test keeps them,
    --in-cluster as a kubeconfig to the fake API server, and the ports left to the caller."""
    out: list[str] = []
    args = iter(lowcarb["args"])
    for arg in args:
        if arg in ("--host", "--port", "--health-port"):
            next(args)
        elif arg == "--in-cluster":
            out += ["--kubeconfig", str(kubeconfig)]
        elif arg in files:
            out.append(str(files[arg]))
        else:
            out.append(arg)
    return out


@pytest.mark.slow
def test_the_overlays_probes_answer_over_plain_http(
    lowcarb: Manifest, api: tuple[FakeApiServer, threading.Event], tmp_path: Path
) -> None:
    server, release = api
    server_ca, client_ca = trustme.CA(), trustme.CA()
    cert = server_ca.issue_cert("lowcarb.lowcarb-system.svc")
    files = {
        flag_value(lowcarb["args"], flag): tmp_path / name
        for flag, name in [
            ("--tls-cert", "tls.crt"),
            ("--tls-key", "tls.key"),
            ("--client-ca", "ca.crt"),
            ("--policy", "policy.yaml"),
            ("--ledger", "ledger.sqlite"),
        ]
    }
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    client_ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    (tmp_path / "policy.yaml").write_text((KUSTOMIZE / "base/files/default.yaml").read_text())
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    args = overlay_args(lowcarb, {str(k): v for k, v in files.items()}, kubeconfig)
    health = free_port()
    with running_lowcarb([*args, "--health-port", str(health)], tmp_path / "serve.log"):
        kubelet = httpx.Client(base_url=f"http://127.0.0.1:{health}", timeout=5)
        ready, alive = (lowcarb[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe"))
        assert kubelet.get(alive).status_code == 200
        assert kubelet.get(ready).status_code == 503  # the pod list has not come yet
        release.set()
        deadline = time.monotonic() + 30
        while kubelet.get(ready).status_code != 200:
            assert time.monotonic() < deadline, "never ready after the cache synced"
            time.sleep(0.05)
        kubelet.close()
