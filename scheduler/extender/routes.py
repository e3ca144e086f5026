"""HTTP routes of the extender: the four verbs under a URL prefix, health, readiness, metrics.

The verbs stay bytes in, bytes out over msgspec: each is a raw ``Request -> Response`` route
(:class:`RawRoute`: listed in the OpenAPI document like any FastAPI route, but its handler is the
endpoint itself: no parameter parsing, no pydantic, no response model). The endpoint reads the
body (413 above the size limit), times the call, turns bad input into 400 with a message naming
the problem, and never lets an exception take the worker down (500 with the error kind, counted);
errors are raised as :class:`scheduler.api.errors.ApiError` and written by the app's one handler.
The Go-shaped bodies are documented from the msgspec wire types (:func:`verb_components`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import request_response

from scheduler import metrics, wire
from scheduler.api.errors import ApiError, error_responses
from scheduler.extender.service import Extender

log = structlog.get_logger("lowcarb.api")
DEFAULT_MAX_BODY = 256 * 2**20  # 5,000 full nodes are ~50 MiB; leave room
JSON = "application/json"
COMPONENTS = "#/components/schemas/{name}"
Handler = Callable[[bytes], bytes | Awaitable[bytes]]


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


class RawRoute(APIRoute):
    """A route FastAPI documents but does not wrap: the endpoint gets the raw ``Request`` and
    returns the ``Response`` as is, through Starlette's own ``request_response`` (what a
    Starlette ``Route`` runs; FastAPI's adds the exit stacks of dependencies, which these routes
    have none of)."""

    def __init__(self, path: str, endpoint: Callable[[Request], Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)

    def get_route_handler(self) -> Callable[[Request], Any]:
        return self.endpoint


# --- the Go-shaped bodies, for the OpenAPI document ------------------------------------------
# Preemption is answered from a loose decode (see Extender.preempt); these structs only describe
# kube-scheduler's ExtenderPreemptionArgs/Result in the contract.


class MetaPod(msgspec.Struct):
    UID: str = ""


class MetaVictims(msgspec.Struct):
    Pods: list[MetaPod] | None = None
    NumPDBViolations: int = 0


class Victims(msgspec.Struct):
    Pods: list[wire.Pod] | None = None
    NumPDBViolations: int = 0


class ExtenderPreemptionArgs(msgspec.Struct):
    """kube-scheduler's preemption candidates: victims as pods, or as UIDs (nodeCacheCapable)."""

    Pod: wire.Pod | None = None
    NodeNameToVictims: dict[str, Victims] | None = None
    NodeNameToMetaVictims: dict[str, MetaVictims] | None = None


class ExtenderPreemptionResult(msgspec.Struct):
    """The candidates lowcarb accepts (all of them: it adds no preemption policy)."""

    NodeNameToMetaVictims: dict[str, MetaVictims] | None = None


# verb -> (request type, answer type, summary)
VERBS: dict[str, tuple[Any, Any, str]] = {
    "filter": (
        wire.ExtenderArgs,
        wire.ExtenderFilterResult,
        "Nodes that can take the pod, and why the others cannot",
    ),
    "prioritize": (
        wire.ExtenderArgs,
        list[wire.HostPriority],
        "A 0..10 score per node (GPU fit, carbon, policy terms)",
    ),
    "bind": (
        wire.ExtenderBindingArgs,
        wire.ExtenderBindingResult,
        "Bind the pod to the chosen node (cluster mode) and record the decision",
    ),
    "preempt": (
        ExtenderPreemptionArgs,
        ExtenderPreemptionResult,
        "Accept kube-scheduler's preemption victims as proposed",
    ),
}


def verb_components() -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], dict[str, Any]]:
    """Per verb (request schema, answer schema) as ``$ref``s, and the components they name."""
    types = [t for req, out, _ in VERBS.values() for t in (req, out)]
    schemas, components = msgspec.json.schema_components(types, ref_template=COMPONENTS)
    refs = iter(schemas)
    return {verb: (next(refs), next(refs)) for verb in VERBS}, components


def _openapi(verb: str, request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "The body kube-scheduler's HTTP extender sends (JSON, Go field names)",
            "content": {JSON: {"schema": request}},
        },
        "responses": {
            "200": {
                "description": f"The answer kube-scheduler decodes for {verb}",
                "content": {JSON: {"schema": answer}},
            }
        },
    }


def verb_routes(
    extender: Extender, *, url_prefix: str = "", max_body: int = DEFAULT_MAX_BODY
) -> list[RawRoute]:
    """``POST {prefix}/filter|prioritize|bind|preempt`` over ``extender``."""
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    shapes, _ = verb_components()

    def route(name: str, handler: Handler) -> RawRoute:
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
                message = f"request body above the {max_body}-byte limit (--max-body)"
                raise ApiError(413, message, field="body") from None
            except wire.WireError as exc:
                metrics.ERRORS.labels("bad_request").inc()
                raise ApiError(400, str(exc), field="body") from None
            except Exception as exc:
                metrics.ERRORS.labels("internal").inc()
                log.exception("extender call failed", verb=name)
                message = f"internal error in {name}: {type(exc).__name__}: {exc}"
                raise ApiError(500, message) from None
            finally:
                metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)

        request_schema, answer_schema = shapes[name]
        return RawRoute(
            f"{prefix}/{name}",
            endpoint,
            methods=["POST"],
            name=name,
            operation_id=name,
            summary=VERBS[name][2],
            tags=["extender"],
            responses=error_responses(400, 413, 500),
            openapi_extra=_openapi(name, request_schema, answer_schema),
        )

    return [
        route("filter", extender.filter_call),
        route("prioritize", extender.prioritize_call),
        route("bind", extender.bind),
        route("preempt", extender.preempt),
    ]


def health_router(ready: Callable[[], tuple[bool, str]]) -> APIRouter:
    """``/healthz`` (alive), ``/readyz`` (503 until ready: cache synced in cluster mode) and
    ``/metrics`` (Prometheus text format)."""
    router = APIRouter(tags=["operations"])
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}

    @router.get(
        "/healthz", name="healthz", response_class=PlainTextResponse, summary="Liveness: always ok"
    )
    async def healthz() -> Response:
        return PlainTextResponse("ok")

    @router.get(
        "/readyz",
        name="readyz",
        response_class=PlainTextResponse,
        summary="Readiness: ok once the policy is loaded and (cluster mode) the cache is synced",
        responses={503: {"description": "Not ready yet: the reason", **text}},
    )
    async def readyz() -> Response:
        ok, why = ready()
        return PlainTextResponse(why, status_code=200 if ok else 503)

    @router.get(
        "/metrics",
        name="metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text exposition format)",
    )
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
