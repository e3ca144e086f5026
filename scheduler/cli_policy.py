"""``lowcarb policy``: validate policy files (each error with file:line:column), print the schema.

``validate`` exits 0 when every file is valid and 1 otherwise; ``schema`` prints the JSON Schema
that ``policies/schema.json`` holds (a test fails when the two drift).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BeforeValidator

from carbon.config import (
    BackoffConfig,
    CarbonConfig,
    CircuitConfig,
    ProviderConfig,
    parse_duration,
)
from scheduler.policy import Policy
from scheduler.validate import PolicyError, load_checked

app = typer.Typer(
    help="Check and describe lowcarb policy files.", no_args_is_help=True, add_completion=False
)

SCHEMA_ID = "https://lowcarb.dev/schemas/policy-v1.json"
CARBON_DURATION = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"  # carbon.config.parse_duration


def policy_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a policy document, keys as written in YAML."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    _duration_inputs(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def _duration_inputs(schema: dict[str, Any]) -> None:
    """The carbon section parses durations from strings ('5m') or seconds; say so in the schema."""
    defs = schema.get("$defs", {})
    for model in (CarbonConfig, ProviderConfig, BackoffConfig, CircuitConfig):
        props = defs.get(model.__name__, {}).get("properties", {})
        for name, field in model.model_fields.items():
            if not any(
                isinstance(m, BeforeValidator) and m.func is parse_duration for m in field.metadata
            ):
                continue
            prop = props.get(field.alias or name)
            if prop is None:
                continue
            number = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
            text = {"type": "string", "pattern": CARBON_DURATION}
            keep = {k: prop[k] for k in ("title", "description", "default") if k in prop}
            prop.clear()
            prop.update(keep, anyOf=[number, text])


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Policy YAML files", show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
) -> None:
    """Validate policy files; print every error as FILE:LINE:COLUMN: FIELD: MESSAGE."""
    bad = 0
    for path in files:
        try:
            policy = load_checked(path)
        except PolicyError as exc:
            bad += 1
            for issue in exc.issues:
                typer.echo(str(issue), err=True)
            n = len(exc.issues)
            typer.echo(f"{path}: invalid ({n} error{'s' if n != 1 else ''})", err=True)
            continue
        if not quiet:
            names = ", ".join(policy.classes)
            typer.echo(
                f"{path}: ok (classes: {names}; carbon: {' -> '.join(policy.carbon.fallback)})"
            )
    raise typer.Exit(code=1 if bad else 0)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout")
    ] = None,
) -> None:
    """Print the JSON Schema of policy files (policies/schema.json)."""
    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
