"""Bounds on a request's head (request line + headers) for uvicorn's httptools protocol, which has none:
a 16 MiB header used to be buffered whole, and a client trickling header bytes held its connection forever.

``guarded_protocol(max_head_bytes, head_timeout)`` makes a subclass of uvicorn's ``HttpToolsProtocol``:
- bytes are counted per read while a head is incomplete, and a read is fed to the parser no further than the
  head may still grow; a head still incomplete at the cap gets 431 (JSON detail, ``connection: close``) and
  the connection is closed, so a connection buffers at most the cap. The common small request costs a few
  attribute reads. (With pipelined requests the count may include the end of the previous request.)
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


def _response(status: bytes, detail: str) -> bytes:
    body = orjson.dumps({"detail": detail})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Where the parser is, read from uvicorn's own state (no parser callback overridden): a head is
    incomplete while no request cycle exists yet or the newest scope (made at message begin) has no cycle
    (made at headers complete); the bytes after a complete head belong to its body while ``more_body``."""

    max_head_bytes = 32 * 1024
    head_timeout = 10.0
    _sweeping: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_of: Any = None  # the scope of the incomplete head counted in _head_bytes (None: the first)
        self._head_bytes = 0  # bytes read while that head was incomplete (an upper bound of its size)
        self._head_since = 0.0  # loop time that head began (for the first: when the connection opened)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        if self.loop not in self._sweeping:
            self._schedule_sweep()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # the last head is complete
            if not cycle.more_body and len(data) >= self.max_head_bytes:  # a big read may hold a big head
                self._feed_in_steps(memoryview(data))
                return
        elif len(data) + (self._head_bytes if self._head_of is self.scope else 0) >= self.max_head_bytes:
            self._feed_in_steps(memoryview(data))
            return
        if self._feed(data):
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:  # a head is incomplete after this read
                self._after_read(len(data))

    def _feed_in_steps(self, data: memoryview) -> None:
        """A read that may complete a head past the cap: feed no more than the head may still take, so that a
        head still incomplete then is known to be over the cap (rare: only reads of tens of KiB)."""
        while data:
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope and cycle.more_body:
                step = len(data)  # in a body: the rest in one go
            else:
                step = self.max_head_bytes - (self._head_bytes if self._head_of is self.scope else 0)
            if not self._feed(data[:max(1, step)]) or not self._after_read(min(len(data), max(1, step))):
                return
            data = data[max(1, step):]

    def _after_read(self, size: int) -> bool:
        """Count ``size`` bytes against an incomplete head; False when the connection was refused."""
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            return True  # every head so far is complete
        if self._head_of is not self.scope:  # a head began in this read
            self._head_of, self._head_bytes = self.scope, 0
            if cycle is not None:  # not the connection's first: its time starts now
                self._head_since = self.loop.time()
        self._head_bytes += size
        if self._head_bytes >= self.max_head_bytes:  # incomplete after the cap: over it
            self._refuse_head()
            return False
        return True

    def _feed(self, data: bytes | memoryview) -> bool:
        """uvicorn's ``data_received``; False when the connection was answered and closed."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return True

    def _head_pending(self) -> bool:
        cycle = self.cycle
        return cycle is None or cycle.scope is not self.scope

    def _refuse_head(self) -> None:
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
        if self._head_pending() and self._head_of is self.scope and now - self._head_since > self.head_timeout:
            self._close_with(b"408 Request Timeout",
                             f"the request line and headers did not arrive within {self.head_timeout:g} s")


def guarded_protocol(max_head_bytes: int, head_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these bounds (pass it as ``uvicorn.Config(http=...)``)."""
    return type("BoundedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout, "_sweeping": {}})
