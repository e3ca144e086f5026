"""The FastAPI application of ``lowcarb serve``, and the plain-HTTP health app of --health-port.

:func:`create_app` mounts the extender verbs first (the hot path: raw routes, see
:mod:`scheduler.extender.routes`, dispatched directly by :class:`ServiceAPI`), then health,
readiness and metrics, then the routers the service adds (explain, report, the admission webhook),
all answering errors through the one handler of :mod:`scheduler.api.errors`. The contract is
served at ``/openapi.json`` (:func:`openapi_document`: FastAPI's document plus the msgspec wire
types of the verbs' bodies) and browsed at ``/docs``, whose swagger-ui files lowcarb serves itself
from ``/docs/assets``: clusters are often air-gapped, and FastAPI's default page loads them from a
CDN. The files come from the ``fastapi-offline``
package (swagger-ui's dist bundle, pinned with hashes in requirements.lock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler import __version__
from scheduler.api import errors, schema
from scheduler.extender.routes import (
    DEFAULT_MAX_BODY,
    RawRoute,
    health_router,
    verb_components,
    verb_routes,
)
from scheduler.extender.service import Extender

TITLE = "lowcarb"
DESCRIPTION = (
    "Carbon-aware, GPU-aware scheduler extender for Kubernetes. kube-scheduler calls the "
    "extender verbs (Go-shaped JSON, bytes in and bytes out); operators read /explain, /report, "
    "/metrics and the probes; the API server calls the admission webhook. Every error is "
    '`{"error": {"code", "message", "field"}}`.'
)
OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
# swagger-ui-bundle.js, swagger-ui.css and favicon.png, as the fastapi-offline wheel ships them
ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
# FastAPI's OpenTelemetry hooks off: lowcarb exports Prometheus metrics, and the hooks cost each
# request a check for configured providers
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
TAGS = [
    {"name": "extender", "description": "Called by kube-scheduler (HTTP extender v1)"},
    {"name": "operations", "description": "Explain, report, probes and metrics"},
    {"name": "admission", "description": "Called by the API server (mutating webhook)"},
]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def create_app(
    extender: Extender,
    *,
    url_prefix: str = "",
    max_body: int = DEFAULT_MAX_BODY,
    ready: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
) -> ServiceAPI:
    """The service's app: verbs under ``url_prefix``, probes, metrics, ``routers``, docs."""
    app = ServiceAPI(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        openapi_tags=TAGS,
        docs_url=None,  # served below, from lowcarb's own files
        redoc_url=None,
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
        generate_unique_id_function=operation_id,
    )
    # the verbs first: kube-scheduler's calls match on the first routes tried
    verbs = verb_routes(extender, url_prefix=url_prefix, max_body=max_body)
    app.router.routes[0:0] = verbs
    app.verbs = {route.path: route for route in verbs}
    app.include_router(health_router(ready))
    for router in routers:
        app.include_router(router)
    _mount_docs(app)
    errors.install(app)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


class ServiceAPI(FastAPI):
    """FastAPI, with the extender verbs dispatched ahead of its per-request layers.

    The verbs are raw routes (:class:`~scheduler.extender.routes.RawRoute`): no dependencies,
    validation, response model, upload files or telemetry. FastAPI's layers around every route
    (its OpenTelemetry hook, body-limit middleware, exit stack for uploaded files, router
    bookkeeping) do nothing for them but cost each call a few microseconds (``benchmarks/
    latency.py --http``, the in-process table). So a POST to a verb's path goes straight to its
    route, inside Starlette's ``ExceptionMiddleware`` with this app's handlers: its errors are
    still the one error model. Everything else takes FastAPI's way, and so do the verbs as soon
    as the app gets a middleware of its own (which they must not skip).
    """

    verbs: dict[str, RawRoute]
    _direct: dict[str, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.user_middleware:
            if self._direct is None:
                handlers = {
                    k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)
                }
                self._direct = {
                    path: ExceptionMiddleware(route.app, handlers=handlers)
                    for path, route in getattr(self, "verbs", {}).items()
                }
            direct = self._direct.get(scope["path"])
            if direct is not None and not scope.get("root_path"):
                scope["app"] = self
                await direct(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operationId: its name (filter, explain, report, ...)."""
    return route.name


def health_app(ready: Callable[[], tuple[bool, str]]) -> FastAPI:
    """``/healthz``, ``/readyz`` and ``/metrics`` alone: the plain-HTTP listener of
    ``lowcarb serve --health-port`` (probes need no client certificate there)."""
    app = FastAPI(
        title=f"{TITLE} health",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.include_router(health_router(ready))
    errors.install(app)
    return app


def _mount_docs(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{TITLE} {__version__} - API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # no badge fetched from an online validator
            swagger_ui_parameters={"validatorUrl": None},
        )


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for ``app`` plus the schemas its hand-written parts refer to: the
    verbs' msgspec wire types and the pydantic models of raw-body routes."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    _drop_fastapi_validation_errors(doc)
    mine = doc.setdefault("components", {}).setdefault("schemas", {})
    _, wire_schemas = verb_components()
    for name, value in {**wire_schemas, **schema.components()}.items():
        if mine.setdefault(name, value) != value:
            raise ValueError(f"two different schemas named {name} in the OpenAPI document")
    doc["components"]["schemas"] = dict(sorted(mine.items()))
    app.openapi_schema = doc
    return doc


def _drop_fastapi_validation_errors(doc: dict[str, Any]) -> None:
    """FastAPI lists a 422 ``HTTPValidationError`` for routes with parameters; lowcarb answers
    those errors as 400 with its error model (:func:`scheduler.api.errors.error_response`)."""
    fastapi_ref = "#/components/schemas/HTTPValidationError"
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            schema = answers.get("422", {}).get("content", {}).get("application/json", {})
            if schema.get("schema", {}).get("$ref") == fastapi_ref:
                del answers["422"]
                answers.setdefault("400", {"description": "Bad request", "content": _ERROR})
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
