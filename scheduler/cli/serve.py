"""``lowcarb serve``: check every start-up input, then run the extender under uvicorn.

Everything a user can get wrong is checked before uvicorn starts and reported as one
``lowcarb: error:`` line with exit code 2: option ranges and files (typer), the policy (with the
validator's file:line:column lines), the kubeconfig and the TLS files it names, the ledger path,
``--tls-cert``/``--tls-key``/``--client-ca`` (loaded once here), and the listen address: the
socket is bound here, so a port in use or an address not on this machine is reported before the
app starts, and uvicorn serves on that very socket (no window for another process to take it).
With ``--health-port`` a second, plain-HTTP listener serves ``/healthz``, ``/readyz`` and
``/metrics`` in the same process and event loop, so kubelet probes work while the main listener
requires client certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from carbon.accounting.ledger import LedgerError, parse_target
from scheduler.cli.errors import UsageError, blame, input_file, require
from scheduler.cli.inputs import check_cluster_options, kube_config, ledger_option, policy_errors
from scheduler.cli.lease import (
    DEFAULT_LEASE,
    LeaderElectOpt,
    LeaseDurationOpt,
    LeaseNameOpt,
    LeaseNamespaceOpt,
    lease_settings,
)

if TYPE_CHECKING:
    import uvicorn


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def tls_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> None:
    """Load the certificate, its key and the client CA once, naming the option at fault."""
    require(
        (cert is None) == (key is None),
        "--tls-key" if cert else "--tls-cert",
        "--tls-cert and --tls-key go together",
        "give both or neither",
    )
    require(
        client_ca is None or cert is not None,
        "--client-ca",
        "needs --tls-cert and --tls-key",
        "give the server certificate and key too",
    )
    if cert is None or key is None:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # a password-protected key would make OpenSSL prompt on the terminal: refuse it instead
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise UsageError(
            "--tls-cert/--tls-key",
            f"cannot use {str(cert)!r} with {str(key)!r}: {exc.reason or exc}",
            "give a PEM certificate and its matching, unencrypted PEM private key",
        ) from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(client_ca)
        except ssl.SSLError as exc:
            raise UsageError(
                "--client-ca",
                f"cannot read CA certificates from {str(client_ca)!r}: {exc.reason or exc}",
                "give a PEM file of the CA that signs client certificates",
            ) from None


def listen(host: str, port: int, option: str = "--port") -> list[socket.socket]:
    """Bound (not yet listening) sockets for ``host:port``; uvicorn listens on them."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise UsageError(
            "--host",
            f"cannot resolve {host!r} ({exc.strerror})",
            "give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _listen_error(host, port, exc, option) from None
    return sockets


def _listen_error(host: str, port: int, exc: OSError, option: str = "--port") -> UsageError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return UsageError(
            option,
            f"{where} is already in use",
            f"stop the process that listens there or choose another {option}",
        )
    if exc.errno == errno.EACCES:
        return UsageError(
            option, f"not allowed to listen on {where}", f"choose a {option} of 1024 or above"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(
            "--host",
            f"{host!r} is not an address of this machine",
            "give e.g. 127.0.0.1 or 0.0.0.0",
        )
    return UsageError(f"--host/{option}", f"cannot listen on {where}: {exc.strerror or exc}")


async def _serve(
    main: uvicorn.Server,
    sockets: list[socket.socket],
    health: uvicorn.Server | None,
    health_sockets: list[socket.socket],
) -> None:
    """The main server, and the health server for as long as the main one runs."""
    if health is None:
        await main.serve(sockets=sockets)
        return
    probes = asyncio.create_task(health.serve(sockets=health_sockets), name="health-port")
    try:
        await main.serve(sockets=sockets)
    finally:
        health.should_exit = True
        await probes


def service_config(
    app: Any, host: str, port: int, log_level: str, ssl_kwargs: dict[str, Any]
) -> uvicorn.Config:
    """uvicorn's settings for the extender service (the probes' server keeps uvicorn's own)."""
    import uvicorn

    from scheduler.extender.coalesce import CoalescingHttpToolsProtocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=CoalescingHttpToolsProtocol,  # one write per response (head and body together)
        log_level=log_level,
        log_config=None,
        access_log=False,
        **ssl_kwargs,
    )


def run(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    health_config: uvicorn.Config | None = None,
    health_sockets: list[socket.socket] | None = None,
) -> None:
    """What ``uvicorn.Server.run`` does, with the --health-port server beside the main one
    (same event loop; the main server owns the signals and the lifespan)."""
    import uvicorn

    class HealthServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    main = uvicorn.Server(config)
    health = HealthServer(health_config) if health_config is not None else None
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(main, sockets, health, health_sockets or []))


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8888,
    policy: Annotated[
        Path | None,
        typer.Option(
            callback=input_file,
            help="Policy YAML (hot-reloaded); default: the embedded default policy",
        ),
    ] = None,
    url_prefix: Annotated[
        str, typer.Option(help="Prefix of the verbs, e.g. /scheduler -> POST /scheduler/filter")
    ] = "",
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            callback=input_file, help="Cluster mode: keep a node/pod cache via this kubeconfig"
        ),
    ] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Cluster mode with the pod's service account")
    ] = False,
    ledger: Annotated[
        str | None,
        typer.Option(
            callback=ledger_option,
            help="Ledger of placement decisions: a SQLite file, or postgresql://USER@HOST/DB",
        ),
    ] = None,
    accounting_interval: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between accounting passes over the ledger (a pod is accounted at its "
            "first pass after accounting.settleAfter)",
        ),
    ] = 300.0,
    max_body: Annotated[
        int, typer.Option(min=1, help="Largest request body in bytes (413 above)")
    ] = 256 * 2**20,
    tls_cert: Annotated[
        Path | None, typer.Option(callback=input_file, help="Serve HTTPS with this certificate")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(callback=input_file, help="Private key of --tls-cert")
    ] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(
            callback=input_file,
            help="Require client certificates signed by this CA (mutual TLS)",
        ),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Also serve /healthz, /readyz and /metrics over plain HTTP on this port "
            "(probes without a client certificate when --client-ca is set)",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Log level")
    ] = LogLevel.info,
    bind_wait_ms: Annotated[
        int,
        typer.Option(
            min=0,
            max=5000,
            help="Longest a shared-GPU pod's filter waits for the bind of a pod scheduled just "
            "before it (kube-scheduler binds in the background); 0: never wait",
        ),
    ] = 250,
    shortlist: Annotated[
        int,
        typer.Option(
            min=0,
            max=100_000,
            help="Filter passes kube-scheduler at most this many feasible nodes, the cheapest "
            "(its plugins score only those; pods with soft affinity or ScheduleAnyway spread "
            "get all); 0: every feasible node",
        ),
    ] = 100,
    leader_elect: LeaderElectOpt = False,
    lease_name: LeaseNameOpt = DEFAULT_LEASE,
    lease_namespace: LeaseNamespaceOpt = None,
    lease_duration: LeaseDurationOpt = 15.0,
) -> None:
    """Run the extender (request-fed mode unless --kubeconfig or --in-cluster is given)."""
    import structlog
    import uvicorn

    from scheduler.app import ServeOptions, build_runtime
    from scheduler.cli.logs import configure_logging
    from scheduler.extender.http import health_app

    check_cluster_options(kubeconfig, in_cluster)
    require(
        health_port != port,
        "--health-port",
        f"{health_port} is --port too",
        "give the probes a port of their own, e.g. 8081",
    )
    tls_files(tls_cert, tls_key, client_ca)
    lease = lease_settings(leader_elect, lease_name, lease_namespace, lease_duration)
    require(
        lease is None or bool(kubeconfig or in_cluster),
        "--leader-elect",
        "elects the gate controller, which runs only in cluster mode",
        "add --in-cluster or --kubeconfig, or drop --leader-elect",
    )
    configure_logging(log_level.value)  # what follows may log (kubeconfig, policy warnings)
    cluster = kube_config(kubeconfig, in_cluster) if kubeconfig or in_cluster else None
    options = ServeOptions(
        policy=policy,
        url_prefix=url_prefix,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        kube_config=cluster,
        ledger=parse_target(ledger) if ledger is not None else None,
        max_body=max_body,
        accounting_interval_s=accounting_interval,
        lease=lease,
        bind_wait_s=bind_wait_ms / 1000.0,
        shortlist=shortlist,
    )
    with policy_errors("--policy"), blame("--ledger", LedgerError):
        runtime = build_runtime(options)
    sockets = listen(host, port)
    health_sockets = listen(host, health_port, "--health-port") if health_port else []
    ssl_kwargs: dict[str, Any] = {}
    if tls_cert is not None:
        ssl_kwargs = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
        if client_ca is not None:
            ssl_kwargs.update(ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = service_config(runtime.app, host, port, log_level.value, ssl_kwargs)
    health = None
    if health_port:
        health = uvicorn.Config(
            health_app(runtime.ready),
            host=host,
            port=health_port,
            log_level=log_level.value,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    scheme = "https" if tls_cert is not None else "http"
    structlog.get_logger("lowcarb.serve").info(
        "starting",
        url=f"{scheme}://{host}:{port}{runtime.options.url_prefix}",
        probes=f"http://{host}:{health_port}" if health_port else None,
    )
    run(config, sockets, health, health_sockets)
