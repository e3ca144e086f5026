"""Cost of the deployment's transport choices: plain HTTP (sidecar), HTTPS, mutual TLS.

Starts the real `lowcarb serve` three times on 127.0.0.1 (certificates from trustme) and
replays a real kube-scheduler prioritize request (tests/fixtures/deploy) with a keep-alive
client, as kube-scheduler's Go client does, and with a new connection per request (the
worst case: a full TLS handshake each time). Also times the sidecar's exec probe command.
Prints a table, then one JSON line: {"benchmark": "transport", "results": [...]}.

    .venv/bin/python benchmarks/transport.py [--requests 400]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trustme

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "deploy" / "prioritize.args.nodeCacheCapable-false.json"
PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(flags: list[str]) -> Iterator[int]:
    """`lowcarb serve` on a free loopback port for the duration of the block."""
    port = free_port()
    script = Path(sys.executable).with_name("lowcarb")
    entry = [sys.executable, "-c", "from scheduler.cli.main import main; main()"]
    command = [str(script)] if script.is_file() else entry
    process = subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"lowcarb serve exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("lowcarb serve did not start within 60 s") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def timed_batch(url: str, verify: ssl.SSLContext | bool, requests: int, reuse: bool) -> list[float]:
    """Milliseconds per request for a batch, on one keep-alive client or a new one each time."""
    body = FIXTURE.read_bytes()
    timings: list[float] = []
    client = httpx.Client(verify=verify, timeout=10)
    client.post(url, content=body).raise_for_status()  # warm: connection and code paths
    try:
        for _ in range(requests):
            if not reuse:
                client.close()
                client = httpx.Client(verify=verify, timeout=10)
            start = time.perf_counter()
            response = client.post(url, content=body)
            elapsed = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            timings.append(elapsed)
    finally:
        client.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server_ca, client_ca = trustme.CA(), trustme.CA()
        server = server_ca.issue_cert("127.0.0.1")
        cert, key, client_ca_file = directory / "c.pem", directory / "k.pem", directory / "ca.pem"
        cert.write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(key))
        client_ca.cert_pem.write_to_path(str(client_ca_file))
        tls_context = ssl.create_default_context()
        server_ca.configure_trust(tls_context)
        mtls_context = ssl.create_default_context()
        server_ca.configure_trust(mtls_context)
        client_ca.issue_cert("kube-scheduler").configure_cert(mtls_context)

        layouts: list[tuple[str, list[str], str, ssl.SSLContext | bool]] = [
            ("http", [], "http", False),
            ("https", ["--tls-cert", str(cert), "--tls-key", str(key)], "https", tls_context),
            (
                "mtls",
                [
                    "--tls-cert",
                    str(cert),
                    "--tls-key",
                    str(key),
                    "--client-ca",
                    str(client_ca_file),
                ],
                "https",
                mtls_context,
            ),
        ]
        # All three servers run at once and batches alternate between them, so load from
        # other processes on the machine falls on every transport alike.
        with contextlib.ExitStack() as stack:
            ports = {name: stack.enter_context(serving(flags)) for name, flags, _, _ in layouts}
            cases = [
                (name, scheme, verify, reuse)
                for name, _, scheme, verify in layouts
                for reuse in (True, False)
            ]
            samples: dict[tuple[str, bool], list[float]] = {(c[0], c[3]): [] for c in cases}
            batch = 20
            for _ in range(max(1, options.requests // batch)):
                for name, scheme, verify, reuse in cases:
                    url = f"{scheme}://127.0.0.1:{ports[name]}/prioritize"
                    samples[(name, reuse)] += timed_batch(url, verify, batch, reuse)
            probe = []
            for _ in range(10):
                start = time.perf_counter()
                command = [sys.executable, "-c", PROBE.format(port=ports["http"])]
                subprocess.run(command, check=True)
                probe.append((time.perf_counter() - start) * 1000)
            probe_ms = round(statistics.median(probe), 1)
        results: list[dict[str, object]] = [
            {
                "transport": name,
                "connection": "keep-alive" if reuse else "new",
                "requests": len(timings),
                "p50_ms": round(percentile(timings, 50), 3),
                "p99_ms": round(percentile(timings, 99), 3),
            }
            for (name, reuse), timings in samples.items()
        ]

    print(f"{'transport':<10}{'connection':<12}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for row in results:
        print(
            f"{row['transport']!s:<10}{row['connection']!s:<12}{row['requests']!s:>9}"
            f"{row['p50_ms']!s:>9}{row['p99_ms']!s:>9}"
        )
    print(f"exec probe (python + GET /healthz), median of 10: {probe_ms} ms")
    load = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) at the end: {load} on {os.cpu_count()} cores")
    summary = {"benchmark": "transport", "results": results, "exec_probe_ms": probe_ms}
    print(json.dumps({**summary, "loadavg_1m": load}))


if __name__ == "__main__":
    main()
