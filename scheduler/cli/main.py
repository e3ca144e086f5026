"""The ``lowcarb`` command line (typer): the root app, ``version``, and every area's commands.

Every lowcarb typer app is built by :func:`scheduler.cli.errors.new_app`: a mistake in what the user
gave is one ``lowcarb: error: <option>: <problem>; <fix>`` line on stderr and exit code 2; an
internal error is one line and exit code 1, with the traceback under ``lowcarb --debug``.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import structlog
import typer

from carbon import clock
from scheduler import __version__
from scheduler.cli.errors import DEBUG_ENV, DEBUG_KEY, new_app

app = new_app(
    name="lowcarb",
    help="Carbon-aware, GPU-aware scheduler extender for Kubernetes.",
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Show the Python traceback of an internal error (a bug to report)",
        ),
    ] = False,
) -> None:
    """Carbon-aware, GPU-aware scheduler extender for Kubernetes."""
    ctx.meta[DEBUG_KEY] = debug


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


def _register_subcommands() -> None:
    """Every command group and command, each from its own module (imported here, after ``app``
    exists, because some of them reuse this module's helpers)."""
    from scheduler.cli import carbon, explain, gates, openapi, policy, report, serve, simulate

    app.command(name="serve")(serve.serve)
    app.add_typer(carbon.app, name="carbon")
    app.add_typer(policy.app, name="policy")
    app.add_typer(gates.app, name="gates")
    app.command(name="report")(report.report)
    app.command(name="explain")(explain.explain)
    app.command(name="simulate")(simulate.simulate)
    app.command(name="openapi")(openapi.openapi)


_register_subcommands()


def main() -> None:
    try:
        clock.offset()  # a bad LOWCARB_NOW is one clear line now, not a traceback mid-command
    except clock.ClockError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    app()
