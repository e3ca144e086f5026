"""``lowcarb policy``: validate policy files (each error with file:line:column), migrate a v1 file,
print the schema.

``validate`` exits 0 when every file is valid and 1 otherwise (text, JSON, or GitHub Actions
annotations for CI); ``migrate`` rewrites a ``lowcarb.dev/v1`` file (class weights) to v2, keeping
its comments, and validates the result (:mod:`scheduler.policy.migrate`); ``schema`` prints the
JSON Schema that ``policies/schema.json`` holds (a test fails when the two drift).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduler.cli.errors import UsageError, blame, input_file, is_stdout, new_app, output_file
from scheduler.policy.migrate import MigrateError, migrate_text
from scheduler.policy.model import Policy
from scheduler.policy.validate import Issue, check_document

app = new_app(help="Check and describe lowcarb policy files.")

SCHEMA_ID = "https://lowcarb.dev/schemas/policy-v2.json"


def policy_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a policy document, keys as written in YAML."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Policy YAML files ('-' reads stdin)", show_default=False)
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
    output: Annotated[
        Format,
        typer.Option(
            "--format",
            "--output",
            help="text; json (one object); github (Actions ::error annotations); "
            "--output is the same option",
        ),
    ] = Format.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1)")] = False,
) -> None:
    """Validate policy files; print every error as FILE:LINE:COLUMN: FIELD: MESSAGE.

    Warnings (valid, but probably not meant: a misspelt owner kind, a class no selector reaches,
    a residency zone no source knows) are printed too and fail only with --strict.
    """
    report: dict[str, dict[str, list[dict[str, object]]]] = {}
    bad = 0
    for path in files:
        name = "<stdin>" if str(path) == "-" else str(path)
        try:
            text = sys.stdin.read() if name == "<stdin>" else path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors = [Issue(name, 1, 1, "", f"cannot read the file: {exc}")]
            policy, warnings = None, []
        else:
            checked = check_document(text, name)
            policy, errors, warnings = checked.policy, checked.errors, checked.warnings
        failed = bool(errors) or (strict and bool(warnings))
        bad += failed
        report[name] = {
            "errors": [asdict(i) for i in errors],
            "warnings": [asdict(i) for i in warnings],
        }
        if output is Format.github:
            for level, issues in (("error", errors), ("warning", warnings)):
                for issue in issues:
                    msg = f"{issue.path}: {issue.message}" if issue.path else issue.message
                    typer.echo(
                        f"::{level} file={issue.file},line={issue.line},col={issue.column},"
                        f"title=lowcarb policy::{_escape(msg)}"
                    )
        elif output is Format.text:
            for issue in errors:
                typer.echo(str(issue), err=True)
            for issue in warnings:
                where = f"{issue.path}: " if issue.path else ""
                typer.echo(
                    f"{issue.file}:{issue.line}:{issue.column}: warning: {where}{issue.message}",
                    err=True,
                )
            if errors:
                n = len(errors)
                typer.echo(f"{name}: invalid ({n} error{'s' if n != 1 else ''})", err=True)
            elif failed:
                typer.echo(f"{name}: warnings with --strict", err=True)
            elif policy is not None and not quiet:
                chain = " -> ".join(policy.carbon.fallback)
                typer.echo(f"{name}: ok (classes: {', '.join(policy.classes)}; carbon: {chain})")
    if output is Format.json:
        typer.echo(json.dumps({"valid": bad == 0, "files": report}, indent=2))
    raise typer.Exit(code=1 if bad else 0)


@app.command()
def migrate(
    file: Annotated[
        Path,
        typer.Argument(
            callback=input_file, help="Policy file to rewrite to lowcarb.dev/v2", show_default=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            callback=output_file,
            help="Write here instead of rewriting FILE in place ('-': stdout)",
        ),
    ] = None,
) -> None:
    """Rewrite a lowcarb.dev/v1 policy (class weights) as lowcarb.dev/v2, keeping its comments.

    Sets apiVersion, removes each class's weights and carbonNormalization (a class whose weights
    left carbon out gets prices: {carbonPerTonne: 0}), validates the result and writes it only
    when it is valid.
    """
    with blame("FILE", OSError, UnicodeDecodeError, fix="give a readable UTF-8 policy file"):
        text = file.read_text(encoding="utf-8")
    with blame("FILE", MigrateError):
        result = migrate_text(text, str(file))
    checked = check_document(result.text, str(out if out and not is_stdout(out) else file))
    if checked.errors:
        raise UsageError(
            "FILE",
            f"the migrated policy is still invalid ({len(checked.errors)} errors)",
            "fix these and run lowcarb policy validate",
            details=[str(i) for i in checked.errors],
        )
    target = file if out is None else out
    if is_stdout(target):
        typer.echo(result.text, nl=False)
    elif result.changed or target != file:
        with blame("--out" if out is not None else "FILE", OSError):
            target.write_text(result.text, encoding="utf-8")
    for note in result.notes:
        typer.echo(f"{file}: {note}" if not note.startswith(str(file)) else note, err=True)
    if result.changed and not is_stdout(target):
        typer.echo(f"{target}: written (lowcarb.dev/v2, valid)", err=True)


def _escape(text: str) -> str:
    """GitHub workflow command data escaping."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            callback=output_file,
            help="Write to this file instead of stdout ('-': stdout)",
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of policy files (policies/schema.json)."""
    text = schema_text()
    if output is None or is_stdout(output):
        typer.echo(text, nl=False)
    else:
        with blame("--output", OSError):
            output.write_text(text, encoding="utf-8")
