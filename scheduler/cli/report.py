"""``lowcarb report``: export the sustainability ledger (CSV, Parquet, JSON, SCI, PNG).

The ledger is a SQLite file or a ``postgresql://`` URL. Finished pods the accountant has not
settled yet (``accounting.settleAfter`` of ``--policy``, default 5m after a pod ends) are counted
on stderr, one line saying how many and when they settle; ``--include-provisional`` adds them to
the report as rows flagged ``provisional``, estimated with the policy's power model.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from carbon.accounting.ledger import LedgerError, parse_target
from carbon.accounting.report import FORMATS, GROUP_KEYS, ReportError, build
from carbon.accounting.report_query import make_options
from carbon.clock import wall
from scheduler.cli.errors import STDOUT, UsageError, blame, input_file, output_file
from scheduler.cli.inputs import policy_errors


def ledger_source(param: typer.CallbackParam, value: str) -> str:
    """Option callback: a postgresql:// URL, or an existing, readable ledger file."""
    with blame("--ledger", LedgerError):
        target = parse_target(value)
    if isinstance(target, Path):
        input_file(param, target)
    return value


def report(
    ledger: Annotated[
        str,
        typer.Option(
            "--ledger",
            callback=ledger_source,
            help="Ledger written by serve: a SQLite file, or postgresql://USER@HOST/DB",
        ),
    ],
    start: Annotated[
        str | None,
        typer.Option("--from", help="Runs started at or after (ISO date/time, UTC if naive)"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Runs started before (ISO date/time or 'now')")
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help=f"{'|'.join(GROUP_KEYS)}, comma-separated for several "
            "(default namespace; job for sci)",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", "--output", help=f"{'|'.join(FORMATS)} (--output is the same option)"
        ),
    ] = "csv",
    sci_unit: Annotated[
        str, typer.Option("--sci-unit", help="Functional unit R of sci: job|pod|gpu-hour")
    ] = "job",
    include_provisional: Annotated[
        bool,
        typer.Option(
            "--include-provisional",
            help="Add finished pods not accounted yet as estimated rows (provisional=true)",
        ),
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            callback=input_file,
            help="Policy lowcarb serve runs (accounting.settleAfter, power model of estimates); "
            "default: the embedded default",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", callback=output_file, help="Output file ('-' or none: stdout)"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            callback=output_file,
            help="Also write a PNG: emissions per day by zone, with avoided ('-': stdout)",
        ),
    ] = None,
) -> None:
    """Export the sustainability ledger: energy, location/market/embodied emissions, avoided."""
    from scheduler.policy.validate import load_policy

    out = None if out == STDOUT else out
    if plot == STDOUT and out is None:
        raise UsageError("--plot", "'-' (stdout) is taken by the report", "give --out FILE too")
    with policy_errors("--policy"):
        settings = load_policy(policy)
    with blame("", ReportError):  # its messages start with the option: "--from: ..."
        opts = make_options(
            start,
            end,
            group_by,
            fmt,
            sci_unit,
            include_provisional=include_provisional,
            accounting=settings.accounting,
            power=settings.power,
        )
    if sys.stdout.isatty():  # binary bytes on a terminal help nobody
        if out is None and opts.format in ("parquet", "png"):
            raise UsageError(
                "--out", f"--format {opts.format} is binary and stdout is a terminal", "give a file"
            )
        if plot == STDOUT:
            raise UsageError("--plot", "a PNG cannot go to a terminal", "give a file")
    now = wall()
    with blame("--ledger", LedgerError):
        result = build(ledger, opts, now)
        png = None
        if plot is not None:
            png = build(ledger, dataclasses.replace(opts, format="png"), now).body
    notice = result.backlog.line(now, include_provisional)
    if notice is not None:
        typer.echo(notice, err=True)
    if png is not None and plot is not None:
        _emit("--plot", plot, png)
    _emit("--out", out, result.body)


def _emit(option: str, path: Path | None, data: bytes) -> None:
    """Standard output for None or '-', else the file, written atomically (temp + rename)."""
    if path is None or path == STDOUT:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with blame(option, OSError, fix="write elsewhere"):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
