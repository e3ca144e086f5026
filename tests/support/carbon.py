"""Shared helpers for carbon tests: fixture loading, routed mock transports, a loopback server,
and the :class:`ContractCase` each provider's test module declares for the contract test."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "carbon-apis"


@dataclass(frozen=True)
class ContractCase:
    """How ``tests/carbon/test_carbon_contract.py`` drives one provider type; the type's test
    module (``test_provider_<type>.py``) declares it as ``CONTRACT``.

    ``latest([zone])`` at ``now``, with the provider entry's ``settings``, the environment
    ``env`` and ``routes`` (path suffix -> fixture file) answering, must return one valid point.
    """

    zone: str
    now: float
    settings: Mapping[str, object] = field(default_factory=dict)
    routes: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    needs_data: bool = False  # reads the shared data dir (skipped when it is absent)


# a route answers at once, or (async clients only) through a coroutine
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def fixture_text(rel: str) -> str:
    """Raw text of a provider fixture, e.g. ``electricitymaps/carbon-intensity-latest.json``."""
    return (FIXTURES / rel).read_text(encoding="utf-8")


def fixture(rel: str) -> Any:
    """Decoded JSON of a provider fixture."""
    return json.loads(fixture_text(rel))


def json_response(rel: str, status: int = 200, **headers: str) -> httpx.Response:
    """An httpx response whose body is exactly the fixture file."""
    return httpx.Response(
        status,
        content=fixture_text(rel).encode(),
        headers={"content-type": "application/json", **headers},
    )


class Recorder:
    """A MockTransport handler that routes by path suffix and records every request."""

    def __init__(self, routes: dict[str, Handler | httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        self.requests.append(request)
        path = request.url.path
        for suffix, target in sorted(self.routes.items(), key=lambda kv: -len(kv[0])):
            if path.endswith(suffix) or suffix == path:
                return target(request) if callable(target) else target
        return httpx.Response(404, json={"error": "no route", "message": path})

    def transport(self) -> httpx.MockTransport:
        """The httpx transport serving these routes."""
        return httpx.MockTransport(self)  # type: ignore[arg-type]  # (sync or async routes)

    def paths(self) -> list[str]:
        """Paths requested so far."""
        return [r.url.path for r in self.requests]


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (own thread and loop) serving Starlette routes."""

    def __init__(self, routes: list[Route]) -> None:
        self.app = Starlette(routes=routes)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.hits: list[str] = []

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def fixture_route(path: str, rel: str, status: int = 200, delay: float = 0.0) -> Route:
    """A Starlette route answering ``path`` with the fixture file (optionally after ``delay``)."""

    async def endpoint(request: Request) -> Response:
        if delay:
            await asyncio.sleep(delay)
        return Response(fixture_text(rel), status_code=status, media_type="application/json")

    return Route(path, endpoint)
