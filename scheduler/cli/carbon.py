"""``lowcarb carbon``: carbon-intensity data commands (``show``).

The work is :func:`scheduler.cli.carbon_show.run_show`, which builds its carbon cache with the
composition root (:func:`scheduler.app.compose`) from ``--policy`` (read with the one policy
loader, so a bad policy is reported as ``lowcarb policy validate`` reports it: every error, each
with file:line:column, exit 2). The carbon package never imports the scheduler, so the command
that owns policy loading lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scheduler.cli.carbon_show import run_show
from scheduler.cli.errors import input_file, new_app
from scheduler.cli.output import OutputOpt, WideOpt

app = new_app(help="Carbon-intensity data: providers, cache and fallback.")


@app.callback()
def _group() -> None:
    """Carbon-intensity data commands."""


@app.command()
def show(
    zones: Annotated[
        str, typer.Option("--zones", help="Comma-separated zone keys, e.g. DE,FR,GB.")
    ],
    forecast: Annotated[
        str | None, typer.Option("--forecast", help="Also show the forecast, e.g. 24h.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="Primary provider name or type.")
    ] = None,
    fallback: Annotated[
        list[str] | None,
        typer.Option("--fallback", help="Fallback provider (repeatable); static is always last."),
    ] = None,
    output: OutputOpt = None,
    wide: WideOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json")] = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", callback=input_file, help="Policy YAML; its carbon: section is used."
        ),
    ] = None,
) -> None:
    """Show current (and forecast) carbon intensity per zone, with source and age."""
    run_show(policy, zones, forecast, provider, fallback, as_json, output=output, wide=wide)
