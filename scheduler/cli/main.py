"""The ``lowcarb`` command line (typer): the root app, ``version``, and every area's commands.

Every lowcarb typer app is built by :func:`scheduler.cli.errors.new_app`: a mistake in what the user
gave is one ``lowcarb: error: <option>: <problem>; <fix>`` line on stderr and exit code 2; an
internal error is one line and exit code 1, with the traceback under ``lowcarb --debug``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from carbon import clock
from scheduler import __version__
from scheduler.cli.errors import DEBUG_ENV, DEBUG_KEY, new_app

app = new_app(
    name="lowcarb",
    help="Carbon-aware, GPU-aware scheduler extender for Kubernetes.",
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
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
