"""``lowcarb openapi``: write the OpenAPI document of the HTTP service (``docs/openapi.json``).

The document is the one ``lowcarb serve`` answers at ``/openapi.json``: built from the same app
(:func:`scheduler.app.build_runtime`, nothing started), so the committed copy, which a test keeps
in sync, is the service's contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduler.cli.errors import blame, is_stdout, output_file

COMMITTED = "docs/openapi.json"


def document(url_prefix: str = "") -> dict[str, Any]:
    """The OpenAPI document of ``lowcarb serve --url-prefix URL_PREFIX``."""
    from scheduler.app import ServeOptions, build_runtime

    return build_runtime(ServeOptions(url_prefix=url_prefix)).app.openapi()


def document_text(url_prefix: str = "") -> str:
    return json.dumps(document(url_prefix), indent=2, ensure_ascii=False) + "\n"


def openapi(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            callback=output_file,
            help=f"Write to this file instead of stdout ('-': stdout), e.g. {COMMITTED}",
        ),
    ] = None,
    url_prefix: Annotated[
        str, typer.Option(help="The verbs' prefix, as given to lowcarb serve --url-prefix")
    ] = "",
) -> None:
    """Print the OpenAPI document of the HTTP service (what /openapi.json serves)."""
    text = document_text(url_prefix)
    if output is None or is_stdout(output):
        typer.echo(text, nl=False)
    else:
        with blame("--output", OSError):
            output.write_text(text, encoding="utf-8")
