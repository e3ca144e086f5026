"""Report options from their text forms, and the pure function behind ``GET /report``.

``lowcarb report`` (:mod:`scheduler.cli.report`) and ``GET /report`` take the same options
(``from``, ``to``, ``group-by``, ``format``, ``sci-unit``) and produce the same bytes; option
errors raise :class:`~carbon.accounting.report.ReportError` naming the option and the fix, ledger
problems :class:`~carbon.accounting.ledger.LedgerError` naming the path.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping
from pathlib import Path

from carbon.accounting.report import (
    CONTENT_TYPES,
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
