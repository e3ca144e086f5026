"""Report options from their text forms, and the pure function behind ``GET /report``.

``lowcarb report`` (:mod:`scheduler.cli.report`) and ``GET /report`` take the same options
(``from``, ``to``, ``group-by``, ``format``, ``sci-unit``, ``include-provisional``) and produce the
same bytes; option errors raise :class:`~carbon.accounting.report.ReportError` naming the option
and the fix, ledger problems :class:`~carbon.accounting.ledger.LedgerError` naming the ledger.
The serving policy's ``accounting`` section and power model come in as arguments: they date when
awaiting pods settle (``settleAfter``) and price the provisional estimates.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping
from pathlib import Path

from carbon.accounting.report import Report, build
from carbon.accounting.report_options import (
    ReportError,
    ReportOptions,
    parse_group_by,
    parse_time,
)
from carbon.accounting.settings import AccountingPolicy
from carbon.energy import PowerModel

__all__ = [
    "ReportError",
    "answer",
    "answer_async",
    "make_options",
    "report_http",
    "report_http_async",
]

_QUERY_KEYS = ("from", "to", "group-by", "format", "sci-unit", "include-provisional")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def make_options(
    start: str | None,
    end: str | None,
    group_by: str | None,
    fmt: str,
    sci_unit: str = "job",
    *,
    include_provisional: bool = False,
    accounting: AccountingPolicy | None = None,
    power: PowerModel | None = None,
) -> ReportOptions:
    """Validated options from their text forms (the default grouping is job for sci)."""
    if group_by is None or not group_by.strip():
        group_by = "job" if fmt == "sci" else "namespace"
    accounting = accounting or AccountingPolicy()
    return ReportOptions(
        start=parse_time(start, "--from") if start else None,
        end=parse_time(end, "--to") if end else None,
        group_by=parse_group_by(group_by),
        format=fmt.strip().lower(),
        sci_unit=sci_unit.strip().lower(),
        include_provisional=include_provisional,
        settle_after_s=accounting.settle_after,
        power=power,
        accounting=accounting,
    )


def _flag(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ReportError(f"{key}: {value!r} is not true or false; write {key}=true")


def answer(
    ledger: str | Path,
    query: Mapping[str, str],
    *,
    accounting: AccountingPolicy | None = None,
    power: PowerModel | None = None,
) -> Report:
    """``GET /report?from=&to=&group-by=&format=&sci-unit=&include-provisional=`` -> the report
    and the pods awaiting accounting (for the response headers).

    Blocking (database + pandas): call it through :func:`answer_async` from the event loop.
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
        include_provisional=_flag("include-provisional", norm.get("include-provisional", "")),
        accounting=accounting,
        power=power,
    )
    return build(ledger, opts)


async def answer_async(
    ledger: str | Path,
    query: Mapping[str, str],
    *,
    accounting: AccountingPolicy | None = None,
    power: PowerModel | None = None,
) -> Report:
    """:func:`answer` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(answer, ledger, query, accounting=accounting, power=power)


def report_http(ledger: str | Path, query: Mapping[str, str]) -> tuple[str, bytes]:
    """(content type, body) of :func:`answer` with the default accounting settings."""
    report = answer(ledger, query)
    return report.content_type, report.body


async def report_http_async(ledger: str | Path, query: Mapping[str, str]) -> tuple[str, bytes]:
    """:func:`report_http` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(report_http, ledger, query)
