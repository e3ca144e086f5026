"""One write per response: uvicorn's HTTP protocol with a response's head and body sent together.

uvicorn writes a response's status line and headers, then its body, as two writes on the socket:
two ``send`` system calls, two TCP segments (two TLS records over TLS), and on loopback two
wake-ups of kube-scheduler's reader, which must come back for the body. Every filter, prioritize
and bind answer pays that, three per pod; profiled through a real kube-scheduler (``py-spy
--gil``, 1,000 nodes, bind on) the two writes were a fifth of lowcarb's time holding the GIL.

:class:`CoalescingHttpToolsProtocol` is uvicorn's own ``httptools`` protocol (``uvicorn.Config
(http=...)``) whose transport holds a complete response head back until the first body write, or
until the response completes without a body (HEAD, 204), or the connection closes, and then
writes both at once. Nothing else changes: an interim ``100 Continue`` goes out at once (the
client waits for it before sending its body), as does anything that is not a response head.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/1.1 "
_INTERIM = b"HTTP/1.1 1"  # 1xx: the client may be waiting for it
_END = b"\r\n\r\n"


class HeadHoldingTransport:
    """A transport proxy that joins a held response head to the next write."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data[:9] == _HEAD and data[-4:] == _END and data[:10] != _INTERIM:
            self._held = bytes(data)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (the response ended without a body)."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, abort, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response's head and body in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = HeadHoldingTransport(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        holder = self.transport
        if isinstance(holder, HeadHoldingTransport):
            holder.flush()
        super().on_response_complete()
