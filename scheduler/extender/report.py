"""``GET /report``: the sustainability report of the serving ledger, as ``lowcarb report`` has it.

The query takes the CLI's options (``from``, ``to``, ``group-by``, ``format``, ``sci-unit``,
``include-provisional``) and the answer is the very bytes of
:func:`carbon.accounting.report_query.answer` (built in a worker thread), with headers saying how
many finished pods still await accounting; the JSON formats are described by
:mod:`scheduler.api.report`. Bad options are 400 naming the parameter, a ledger that cannot be
read 503, no ledger 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from carbon.accounting.ledger import LedgerError
from carbon.accounting.report_query import ReportError, answer_async
from scheduler.api.errors import ApiError, error_responses
from scheduler.api.report import MEDIA_TYPES, Format, Report, SciReport, SciUnit
from scheduler.api.schema import ref
from scheduler.policy.model import Policy

_OPTION = re.compile(
    r"--(from|to|group-by|format|sci-unit)\b|unknown query parameter '([^']*)'"
    r"|^(include-provisional):"
)


def _field(message: str) -> str | None:
    """The query parameter a report error names (its CLI spelling, ``--group-by: ...``)."""
    found = _OPTION.search(message)
    return (found.group(1) or found.group(2) or found.group(3)) if found else None


def report_router(ledger: Path | str | None, policy: Callable[[], Policy]) -> APIRouter:
    """``GET /report`` over ``ledger`` (404 when the service runs without one), with the serving
    ``policy``'s accounting settings and power model (for pods still awaiting accounting)."""
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
        include_provisional: str | None = Query(
            None,
            alias="include-provisional",
            description="true: also report finished pods still awaiting accounting, as estimates",
            examples=["true"],
        ),
    ) -> Response:
        if ledger is None:
            raise ApiError(404, "no ledger: start lowcarb serve with --ledger PATH")
        try:
            # every option as given (typed above for the contract), unknown ones named
            serving = policy()
            report = await answer_async(
                ledger,
                dict(request.query_params),
                accounting=serving.accounting,
                power=serving.power,
            )
        except ReportError as exc:
            raise ApiError(400, str(exc), field=_field(str(exc))) from None
        except LedgerError as exc:
            raise ApiError(503, str(exc)) from None
        # X-Lowcarb-Awaiting-Accounting etc.: pods of the period the accountant has not settled
        return Response(
            report.body, media_type=report.content_type, headers=report.backlog.headers()
        )

    return router
