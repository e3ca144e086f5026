"""The ``lowcarb`` command line (typer): serve, version, and the sub-commands of each area."""

from __future__ import annotations

import logging
import ssl
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from carbon import clock
from scheduler import __version__

app = typer.Typer(
    name="lowcarb",
    help="Carbon-aware, GPU-aware scheduler extender for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)


def configure_logging(level: str = "info", json_logs: bool = True) -> None:
    """One JSON object per line on stderr, for structlog and stdlib loggers alike."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@app.command()
def version() -> None:
    """Print lowcarb's version."""
    typer.echo(f"lowcarb {__version__}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8888,
    policy: Annotated[
        Path | None,
        typer.Option(help="Policy YAML (hot-reloaded); default: the embedded default policy"),
    ] = None,
    url_prefix: Annotated[
        str, typer.Option(help="Prefix of the verbs, e.g. /scheduler -> POST /scheduler/filter")
    ] = "",
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Cluster mode: keep a node/pod cache via this kubeconfig")
    ] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Cluster mode with the pod's service account")
    ] = False,
    ledger: Annotated[
        Path | None, typer.Option(help="SQLite ledger of placement decisions (WAL)")
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (413 above)")] = (
        256 * 2**20
    ),
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key of --tls-cert")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(help="Require client certificates signed by this CA (mutual TLS)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the extender (request-fed mode unless --kubeconfig or --in-cluster is given)."""
    import uvicorn

    from scheduler.app import ServeOptions, build_runtime

    configure_logging(log_level)
    if kubeconfig is not None and in_cluster:
        raise typer.BadParameter("use either --kubeconfig or --in-cluster, not both")
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if client_ca is not None and tls_cert is None:
        raise typer.BadParameter("--client-ca needs --tls-cert and --tls-key")
    options = ServeOptions(
        policy=policy,
        url_prefix=url_prefix,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        ledger=ledger,
        max_body=max_body,
    )
    runtime = build_runtime(options)
    ssl_kwargs: dict[str, object] = {}
    if tls_cert is not None:
        ssl_kwargs = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
        if client_ca is not None:
            ssl_kwargs.update(ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    uvicorn.run(
        runtime.app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        **ssl_kwargs,  # type: ignore[arg-type]
    )


def _register_subcommands() -> None:
    """Sub-apps of each area; an area that is not installed yet is skipped."""
    import importlib

    groups = {
        "carbon": ("scheduler.cli_carbon", "app"),
        "policy": ("scheduler.cli_policy", "app"),
        "gates": ("scheduler.cli_gates", "app"),
    }
    for name, (module, attr) in groups.items():
        try:
            sub = getattr(importlib.import_module(module), attr)
        except ImportError:
            continue
        app.add_typer(sub, name=name)
    commands = {
        "report": ("carbon.report_cli", "report"),
        "explain": ("scheduler.cli_explain", "explain"),
        "simulate": ("scheduler.cli_simulate", "simulate"),
    }
    for name, (module, attr) in commands.items():
        try:
            fn = getattr(importlib.import_module(module), attr)
        except ImportError:
            continue
        app.command(name=name)(fn)


_register_subcommands()


def main() -> None:
    try:
        clock.offset()  # a bad LOWCARB_NOW is one clear line now, not a traceback mid-command
    except clock.ClockError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    app()
