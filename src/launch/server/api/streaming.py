"""Responses sent piece by piece on the fast path (a table route's handler sends them itself): a streaming
prediction's items, a task's events. Each piece goes straight to ``send`` (no framework response object,
no task group per request); a watcher on ``receive`` stops the stream when the client disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from launch.server.streams import NDJSON_TYPE, SSE_TYPE, OpenStream, ndjson, sse

log = logging.getLogger("launch.api")
_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
SSE_HEADER = (b"content-type", SSE_TYPE.encode() + b"; charset=utf-8")
NDJSON_HEADER = (b"content-type", NDJSON_TYPE.encode())


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_all(pieces: AsyncIterator[bytes], content_type: tuple[bytes, bytes], send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [content_type, *_HEADERS]})
    try:
        async for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    except Exception:  # the response has started: it can only end (the client sees no final event)
        log.exception("a stream failed after its response started")
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def relay_stream(stream: OpenStream, as_ndjson: bool, receive: Any, send: Any) -> None:
    """A streaming prediction as the response; a disconnect closes the stream (and the worker's generator)."""

    async def watch() -> None:
        await _disconnected(receive)
        stream.close()  # the body below ends at once

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await _send_all(stream.body(ndjson if as_ndjson else sse), NDJSON_HEADER if as_ndjson else SSE_HEADER, send)
    finally:
        stream.close()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def relay_events(events: AsyncIterator[bytes], receive: Any, send: Any) -> None:
    """Server-sent events as the response, until they end or the client disconnects."""
    loop = asyncio.get_running_loop()
    body = loop.create_task(_send_all(events, SSE_HEADER, send))
    watcher = loop.create_task(_disconnected(receive))
    try:
        await asyncio.wait({body, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (body, watcher):
            task.cancel()
        for task in (body, watcher):
            with contextlib.suppress(asyncio.CancelledError):
                await task
