"""``lowcarb report`` (typer command) and the pure function behind ``GET /report``.

Both take the same options (``from``, ``to``, ``group-by``, ``format``, ``sci-unit``) and produce
the same bytes; option errors raise :class:`~carbon.report.ReportError` naming the option and the
fix, ledger problems :class:`~carbon.ledger.LedgerError` naming the path.
"""

from __future__ import annotations

import asyncio
import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from carbon.cli_errors import STDOUT, UsageError, blame, input_file, output_file
from carbon.ledger import LedgerError
from carbon.report import (
    CONTENT_TYPES,
    FORMATS,
    GROUP_KEYS,
    ReportError,
    ReportOptions,
    build_report,
    parse_group_by,
    parse_time,
)

_QUERY_KEYS = ("from", "to", "group-by", "format", "sci-unit")


def make_options(
    start: str | None,
    end: str | None,
    group_by: str | None,
    fmt: str,
    sci_unit: str = "job",
) -> ReportOptions:
    """Validated options from their text forms (the default grouping is job for sci)."""
    if group_by is None or not group_by.strip():
        group_by = "job" if fmt == "sci" else "namespace"
    return ReportOptions(
        start=parse_time(start, "--from") if start else None,
        end=parse_time(end, "--to") if end else None,
        group_by=parse_group_by(group_by),
        format=fmt.strip().lower(),
        sci_unit=sci_unit.strip().lower(),
    )


def report_http(ledger: str | Path, query: Mapping[str, str]) -> tuple[str, bytes]:
    """``GET /report?from=&to=&group-by=&format=&sci-unit=`` -> (content type, body).

    Blocking (SQLite + pandas): call it through :func:`report_http_async` from the event loop.
    Raises ``ReportError`` for bad query parameters (answer 400) and ``LedgerError`` when the
    ledger cannot be read (answer 503).
    """
    norm = {k.replace("_", "-"): v for k, v in query.items()}
    for key in norm:
        if key not in _QUERY_KEYS:
            hint = difflib.get_close_matches(key, _QUERY_KEYS, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(_QUERY_KEYS)}"
            raise ReportError(f"unknown query parameter {key!r}; {fix}")
    opts = make_options(
        norm.get("from"),
        norm.get("to"),
        norm.get("group-by"),
        norm.get("format", "json"),
        norm.get("sci-unit", "job"),
    )
    return CONTENT_TYPES[opts.format], build_report(ledger, opts)


async def report_http_async(ledger: str | Path, query: Mapping[str, str]) -> tuple[str, bytes]:
    """:func:`report_http` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(report_http, ledger, query)


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
