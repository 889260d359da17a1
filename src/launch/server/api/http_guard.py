"""Bounds on a request's head (request line + headers) for uvicorn's httptools protocol, which has none:
a 16 MiB header used to be buffered whole, and a client trickling header bytes held its connection forever.

``guarded_protocol(max_head_bytes, head_timeout)`` makes a subclass of uvicorn's ``HttpToolsProtocol``:
- bytes are counted per read while a head is incomplete; past the cap the client gets 431 (JSON detail,
  ``connection: close``) and the connection is closed, so a connection buffers at most the cap plus one read.
  A head that completes within one large read is measured exactly (only then: the common small request pays
  one comparison).
- a head not complete ``head_timeout`` seconds after its first byte (or after the connection opened) gets
  408 and the connection is closed. One sweep per second over the open connections checks this, instead of
  a timer per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_NO_HEAD = -1.0
_HEAD_OVERHEAD = 4  # ": " and CRLF around each header


class _HeadTooLarge(Exception):
    pass


def _response(status: bytes, detail: str) -> bytes:
    body = orjson.dumps({"detail": detail})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    head_timeout = 10.0
    _sweeping: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes read so far of the head in progress (an upper bound)
        self._head_since = _NO_HEAD  # loop time the head in progress began; _NO_HEAD between heads
        self._read = 0  # size of the read being parsed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()  # a new connection owes us a head
        if self.loop not in self._sweeping:
            self._schedule_sweep()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._read = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._head_since != _NO_HEAD:  # still inside a head after this read
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        if self._head_since == _NO_HEAD:
            self._head_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_since = _NO_HEAD
        if self._head_bytes + self._read > self.max_head_bytes and self._exact_head_size() > self.max_head_bytes:
            raise _HeadTooLarge
        super().on_headers_complete()

    def _exact_head_size(self) -> int:
        return len(self.url) + 16 + sum(len(n) + len(v) + _HEAD_OVERHEAD for n, v in self.headers)

    def _refuse_head(self) -> None:
        self._head_since = _NO_HEAD
        detail = f"request line and headers are over this server's limit of {self.max_head_bytes} bytes"
        self._close_with(b"431 Request Header Fields Too Large", detail)

    def _close_with(self, status: bytes, detail: str) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never write into a response in progress
            self.transport.write(_response(status, detail))
        self.transport.close()

    # -- head timeout: one sweep per second per event loop ------------------------------------------------
    def _schedule_sweep(self) -> None:
        self._sweeping[self.loop] = self.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection._check_head_deadline(now)
        if self.connections:
            self._schedule_sweep()
        else:
            del self._sweeping[self.loop]  # the next connection starts it again

    def _check_head_deadline(self, now: float) -> None:
        if self._head_since != _NO_HEAD and now - self._head_since > self.head_timeout:
            self._head_since = _NO_HEAD
            self._close_with(b"408 Request Timeout",
                             f"the request line and headers did not arrive within {self.head_timeout:g} s")


def guarded_protocol(max_head_bytes: int, head_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these bounds (pass it as ``uvicorn.Config(http=...)``)."""
    return type("BoundedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout, "_sweeping": {}})
