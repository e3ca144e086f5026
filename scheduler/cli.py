"""The ``lowcarb`` command line (typer): the root app, ``version``, and every area's commands.

Every lowcarb typer app is built by :func:`carbon.cli_errors.new_app`: a mistake in what the user
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
from carbon.cli_errors import DEBUG_ENV, DEBUG_KEY, new_app
from scheduler import __version__

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
    """Sub-apps of each area; an area that is not installed yet is skipped."""
    import importlib

    from scheduler.cli_serve import serve

    app.command(name="serve")(serve)
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
