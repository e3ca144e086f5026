"""How lowcarb's data commands print: ``--output table|json|csv`` and ``--wide``, one way for all.

A command describes its columns once (:class:`Column`: key, heading, whether the narrow table
shows it); :func:`emit` prints rows as a rich table that fits the terminal (80 columns when
output is not a terminal; every column with ``--wide``), as JSON, or as CSV with every column.
``--json`` stays an alias of ``--output json`` where a command had it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from scheduler.cli.errors import UsageError

WIDE_WIDTH = 320  # --wide on a pipe: no wrapping (a terminal keeps its own width)


class Output(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table (default), json or csv",
        metavar="FORMAT",
    ),
]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Table: every column (default: the ones that fit 80)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --output json")]


def resolve(output: Output | None, as_json: bool = False) -> Output:
    """``--output`` with ``--json`` as its alias; the two must not disagree."""
    if as_json and output not in (None, Output.json):
        raise UsageError("--json", f"contradicts --output {output}", "give one of them")
    if as_json:
        return Output.json
    return output or Output.table


@dataclass(frozen=True)
class Column:
    """One column: ``key`` in a row, its heading, and whether the narrow (default) table has it."""

    key: str
    head: str
    narrow: bool = True
    right: bool = False
    fmt: Callable[[Any], str] = str


def console(wide: bool = False) -> Console:
    """The terminal's console; off a terminal 80 columns, or no wrapping with ``--wide``."""
    out = Console()
    if wide and not out.is_terminal:
        return Console(width=WIDE_WIDTH)
    return out


def table(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    wide: bool = False,
) -> Table:
    shown = [c for c in columns if wide or c.narrow]
    t = Table(title=title)
    for c in shown:
        t.add_column(c.head, justify="right" if c.right else "left")
    for row in rows:
        t.add_row(*(_cell(c, row.get(c.key)) for c in shown))
    return t


def _cell(column: Column, value: Any) -> str:
    return "-" if value is None else column.fmt(value)


def csv_text(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """Every column, headed by its key, values as they are (no rounding)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in columns])
    return buf.getvalue()


def emit(
    output: Output,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    wide: bool = False,
    payload: Any = None,
) -> None:
    """Print ``rows``: table, CSV, or JSON (``payload`` when given, else the rows as a list)."""
    if output is Output.json:
        typer.echo(json.dumps(list(rows) if payload is None else payload))
    elif output is Output.csv:
        typer.echo(csv_text(columns, rows), nl=False)
    else:
        console(wide).print(table(title, columns, rows, wide=wide))
