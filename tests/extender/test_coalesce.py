"""One write per response (``scheduler/extender/coalesce.py``): the head waits for the body.

A real uvicorn server with the protocol ``lowcarb serve`` uses, on loopback, answering the
extender's own app (a captured kube-scheduler filter) and a few shapes of response: each
response reaches the socket in one write and arrives whole; an interim 100 Continue still goes
out before the body it invites; HEAD and 204 (no body) are not held back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from scheduler.cli.serve import service_config
from scheduler.extender.coalesce import CoalescingHttpToolsProtocol, HeadHoldingTransport
from tests.support.serve import free_port

FILTER = (
    Path(__file__).resolve().parents[1]
    / "fixtures/kube-scheduler/v1.36.2/filter.args.nodeCacheCapable-false.json"
)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def holder() -> tuple[HeadHoldingTransport, FakeTransport]:
    raw = FakeTransport()
    return HeadHoldingTransport(raw), raw  # type: ignore[arg-type]


def test_a_head_is_written_with_the_body_after_it() -> None:
    t, raw = holder()
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert raw.writes == []
    t.write(b"[]")
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]"]
    t.write(b"more")  # nothing held: straight through
    assert raw.writes[-1] == b"more"


def test_interim_responses_and_other_bytes_are_not_held() -> None:
    t, raw = holder()
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    t.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad")  # a whole response
    assert raw.writes == [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad",
    ]


def test_flush_and_close_write_a_held_head() -> None:
    t, raw = holder()
    t.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    t.flush()
    assert raw.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    t.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1\r\n\r\n")
    t.close()
    assert raw.writes[-1].startswith(b"HTTP/1.1 500") and raw.closed
    assert t.is_closing()  # anything else is the transport's own


class CountingTransport:
    """The socket's transport, counting the writes that reach it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: Any) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountingProtocol(CoalescingHttpToolsProtocol):
    """The protocol under test over a counting transport."""

    writes: ClassVar[list[bytes]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CountingTransport(transport, self.writes))  # type: ignore[arg-type]


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def stream(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


def demo_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/empty", empty, methods=["POST"]),
            Route("/stream", stream),
            Route("/text", lambda r: PlainTextResponse("hello"), methods=["GET", "HEAD"]),
        ]
    )


@pytest.fixture
def served() -> Iterator[tuple[str, int]]:
    """``demo_app`` (plus the extender app at /x) behind the counting protocol, in a thread."""
    import threading

    from scheduler.app import ServeOptions, build_runtime

    app = demo_app()
    runtime = build_runtime(ServeOptions())
    app.mount("/x", runtime.app)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=CountingProtocol, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)  # not a timed lock wait: those hang under faketime (make pytest-future)
    assert server.started
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join()


def test_each_response_is_one_write_and_arrives_whole(served: tuple[str, int]) -> None:
    host, port = served
    body = FILTER.read_bytes()
    with httpx.Client(base_url=f"http://{host}:{port}") as client:  # one kept-alive connection
        CountingProtocol.writes.clear()
        answer = client.post("/x/filter", content=body)
        assert answer.status_code == 200
        assert json.loads(answer.content)["Nodes"]["items"]  # the extender answered it
        assert len(CountingProtocol.writes) == 1
        assert CountingProtocol.writes[0].endswith(answer.content)

        CountingProtocol.writes.clear()
        assert client.post("/echo", content=b'{"a":1}').content == b'{"a":1}'
        assert client.post("/empty").status_code == 204
        assert client.head("/text").headers["content-length"] == "5"
        assert client.get("/text").text == "hello"
        assert len(CountingProtocol.writes) == 4  # one each, heads of HEAD and 204 included
        assert client.get("/stream").text == "one,two,three"  # chunks still stream


def test_100_continue_is_sent_before_the_body(served: tuple[str, int]) -> None:
    """A client that waits for 100 Continue before its body gets it (not held back)."""
    host, port = served
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 7\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(b'{"a":1}')
        answer = b""
        while not answer.endswith(b'{"a":1}'):
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_lowcarb_serve_uses_the_protocol() -> None:
    config = service_config(demo_app(), "127.0.0.1", 8888, "info", {})
    config.load()
    assert config.http_protocol_class is CoalescingHttpToolsProtocol
