"""``lowcarb report``: export the sustainability ledger (CSV, Parquet, JSON, SCI, PNG)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from carbon.accounting.ledger import LedgerError
from carbon.accounting.report import FORMATS, GROUP_KEYS, ReportError, ReportOptions, build_report
from carbon.accounting.report_query import make_options
from scheduler.cli.errors import STDOUT, UsageError, blame, input_file, output_file


def report(
    ledger: Annotated[
        Path,
        typer.Option("--ledger", callback=input_file, help="SQLite ledger written by serve"),
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
    fmt: Annotated[str, typer.Option("--format", help="|".join(FORMATS))] = "csv",
    sci_unit: Annotated[
        str, typer.Option("--sci-unit", help="Functional unit R of sci: job|pod|gpu-hour")
    ] = "job",
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
    out = None if out == STDOUT else out
    if plot == STDOUT and out is None:
        raise UsageError("--plot", "'-' (stdout) is taken by the report", "give --out FILE too")
    with blame("", ReportError):  # its messages start with the option: "--from: ..."
        opts = make_options(start, end, group_by, fmt, sci_unit)
    if sys.stdout.isatty():  # binary bytes on a terminal help nobody
        if out is None and opts.format in ("parquet", "png"):
            raise UsageError(
                "--out", f"--format {opts.format} is binary and stdout is a terminal", "give a file"
            )
        if plot == STDOUT:
            raise UsageError("--plot", "a PNG cannot go to a terminal", "give a file")
    with blame("--ledger", LedgerError):
        body = build_report(ledger, opts)
        png = None
        if plot is not None:
            png = build_report(ledger, ReportOptions(start=opts.start, end=opts.end, format="png"))
    if png is not None and plot is not None:
        _emit("--plot", plot, png)
    _emit("--out", out, body)


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
