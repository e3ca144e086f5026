"""The one error model of every HTTP route, and the one handler that writes it.

Every route answers a problem as ``{"error": {"code": ..., "message": ..., "field": ...}}`` with
its HTTP status: routes raise :class:`ApiError`; a request FastAPI rejects before the route runs
(a query parameter missing or not one of its choices), an unknown path or method (404/405) and
anything unexpected (500) go through the same :func:`error_response`, installed for all of them by
:func:`install`. ``message`` is one line naming the problem and the fix; ``field`` names the part
of the request at fault (``body`` or a query parameter) when there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = structlog.get_logger("lowcarb.api")

CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    500: "internal",
    502: "upstream",
    503: "unavailable",
}
_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed: the message names the field and the fix",
    404: "Not found",
    409: "Not possible in this serving mode",
    413: "The body is above the size limit",
    422: "The request is well-formed but cannot be processed",
    500: "Internal error (a bug to report; the process keeps serving)",
    502: "The Kubernetes API server did not answer as expected",
    503: "A resource the answer needs is unavailable",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="Machine-readable kind: " + ", ".join(sorted(set(CODES.values()))),
        examples=["bad_request"],
    )
    message: str = Field(
        description="One line naming the problem and the fix",
        examples=["query parameter pod='train': give namespace/name, e.g. ?pod=ml/job-0"],
    )
    field: str | None = Field(
        default=None,
        description="The part of the request at fault: 'body' or a query parameter's name",
        examples=["pod"],
    )


class ErrorBody(BaseModel):
    """What every lowcarb route answers on an error."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class ApiError(Exception):
    """Raised by a route: answered as :class:`ErrorBody` with ``status``."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, "error")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for ``statuses``, each with the error model."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


def _render(status: int, code: str, message: str, field: str | None) -> Response:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(), status_code=status)


def _location(loc: Sequence[int | str]) -> tuple[str | None, str]:
    """(field, how to say it) for a validation error's location, e.g. ('pod', 'query parameter
    pod')."""
    if not loc:
        return None, "the request"
    where, path = str(loc[0]), [str(p) for p in loc[1:]]
    if where == "body":
        return "body", "body" + "".join(f".{p}" for p in path)
    name = path[0] if path else where
    return name, f"{where} parameter {name}"


def _validation_message(errors: Iterable[Any]) -> tuple[str | None, str]:
    """lowcarb's one line for FastAPI's request validation errors (its own words, the first error
    first; the others counted)."""
    items = [e for e in errors if isinstance(e, dict)]
    if not items:
        return None, "the request is not valid"
    first = items[0]
    field, where = _location(first.get("loc", ()))
    kind = str(first.get("type", ""))
    ctx = first.get("ctx") or {}
    if kind == "missing":
        problem = "is required"
    elif "expected" in ctx:
        problem = f"is {first.get('input')!r}; use {ctx['expected']}"
    else:
        problem = f"is not valid ({first.get('msg', kind)})"
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return field, f"{where} {problem}{more}"


async def error_response(request: Request, exc: Exception) -> Response:
    """The one exception handler: every error of every route as :class:`ErrorBody`."""
    if isinstance(exc, ApiError):
        return _render(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, RequestValidationError):
        field, message = _validation_message(exc.errors())
        return _render(400, CODES[400], message, field)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        where = f"{request.method} {request.url.path}"
        if status == 404:
            message = f"no route {where}; the routes are listed at /docs"
        elif status == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{where}: method not allowed; use {allowed or 'another method'}"
        else:
            message = f"{where}: {exc.detail}"
        response = _render(status, CODES.get(status, "error"), message, None)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response
    log.error("unhandled error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    return _render(500, CODES[500], f"internal error: {type(exc).__name__}: {exc}", None)


def install(app: FastAPI) -> None:
    """Make :func:`error_response` the handler of every error ``app`` can answer."""
    for kind in (ApiError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, error_response)
