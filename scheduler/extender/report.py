"""``GET /report``: the sustainability report of the serving ledger, as ``lowcarb report`` has it.

The query takes the CLI's options (``from``, ``to``, ``group-by``, ``format``, ``sci-unit``) and
the answer is the very bytes of :func:`carbon.accounting.report_query.report_http` (built in a
worker thread); the JSON formats are described by :mod:`scheduler.api.report`. Bad options are
400 naming the parameter, a ledger that cannot be read 503, no ledger 404.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from carbon.accounting.ledger import LedgerError
from carbon.accounting.report_query import ReportError, report_http_async
from scheduler.api.errors import ApiError, error_responses
from scheduler.api.report import MEDIA_TYPES, Format, Report, SciReport, SciUnit
from scheduler.api.schema import ref

_OPTION = re.compile(r"--(from|to|group-by|format|sci-unit)\b|unknown query parameter '([^']*)'")


def _field(message: str) -> str | None:
    """The query parameter a report error names (its CLI spelling, ``--group-by: ...``)."""
    found = _OPTION.search(message)
    return (found.group(1) or found.group(2)) if found else None


def report_router(ledger: Path | None) -> APIRouter:
    """``GET /report`` over ``ledger`` (404 when the service runs without one)."""
    router = APIRouter(tags=["operations"])
    binary = {"schema": {"type": "string", "format": "binary"}}

    @router.get(
        "/report",
        name="report",
        summary="Emissions, energy and avoided emissions from the ledger, grouped (lowcarb report)",
        response_class=Response,
        responses={
            200: {
                "description": "The report in the chosen format",
                "content": {
                    MEDIA_TYPES["json"]: {"schema": {"oneOf": [ref(Report), ref(SciReport)]}},
                    MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                    MEDIA_TYPES["parquet"]: binary,
                    MEDIA_TYPES["png"]: binary,
                },
            },
            **error_responses(400, 404, 503),
        },
    )
    async def report(
        request: Request,
        start: str | None = Query(
            None,
            alias="from",
            description="Runs started at or after: ISO 8601 date or date-time (UTC if naive), "
            "or now",
            examples=["2026-11-01"],
        ),
        end: str | None = Query(
            None, alias="to", description="Runs started before (same forms as from)"
        ),
        group_by: str | None = Query(
            None,
            alias="group-by",
            description="Comma-separated keys among pod, namespace, class, zone, node, day, job; "
            "default namespace (job for sci)",
            examples=["zone,day"],
        ),
        fmt: Format = Query("json", alias="format", description="json, csv, parquet, sci or png"),
        sci_unit: SciUnit = Query("job", alias="sci-unit", description="SCI functional unit"),
    ) -> Response:
        if ledger is None:
            raise ApiError(404, "no ledger: start lowcarb serve with --ledger PATH")
        try:
            # every option as given (typed above for the contract), unknown ones named
            content_type, body = await report_http_async(ledger, dict(request.query_params))
        except ReportError as exc:
            raise ApiError(400, str(exc), field=_field(str(exc))) from None
        except LedgerError as exc:
            raise ApiError(503, str(exc)) from None
        return Response(body, media_type=content_type)

    return router
