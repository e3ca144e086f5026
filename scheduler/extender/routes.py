"""HTTP layer: the extender verbs under a URL prefix, health, readiness and Prometheus metrics.

A thin Starlette app over :class:`scheduler.extender.service.Extender`: it reads the body (413
above the
size limit), times the call, maps bad input to HTTP 400 with a message naming the problem, and
never lets an exception take the worker down (500 with the error kind, counted).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from scheduler import metrics, wire
from scheduler.extender.service import Extender

log = structlog.get_logger("lowcarb.api")
DEFAULT_MAX_BODY = 256 * 2**20  # 5,000 full nodes are ~50 MiB; leave room
JSON = "application/json"


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    extender: Extender,
    *,
    url_prefix: str = "",
    max_body: int = DEFAULT_MAX_BODY,
    ready: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
) -> Starlette:
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""

    def verb(
        name: str, handler: Callable[[bytes], bytes] | Callable[[bytes], Awaitable[bytes]]
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                body = await read_body(request, max_body)
                out = handler(body)
                if not isinstance(out, bytes):
                    out = await out
                return Response(out, media_type=JSON)
            except BodyTooLarge:
                metrics.ERRORS.labels("too_large").inc()
                return _error(413, f"request body above the {max_body}-byte limit (--max-body)")
            except wire.WireError as exc:
                metrics.ERRORS.labels("bad_request").inc()
                return _error(400, str(exc))
            except Exception as exc:
                metrics.ERRORS.labels("internal").inc()
                log.exception("extender call failed", verb=name)
                return _error(500, f"internal error in {name}: {type(exc).__name__}: {exc}")
            finally:
                metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)

        return Route(f"{prefix}/{name}", endpoint, methods=["POST"], name=name)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        ok, why = ready()
        return PlainTextResponse(why, status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        verb("filter", extender.filter),
        verb("prioritize", extender.prioritize),
        verb("bind", extender.bind),
        verb("preempt", extender.preempt),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *extra_routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
