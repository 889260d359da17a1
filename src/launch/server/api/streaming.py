"""``POST /v1/streaming-tasks`` on the bare ASGI fast path: the stream's pieces go straight to ``send``
(no framework response object, no task group per request); a watcher on ``receive`` closes the stream when
the client disconnects. ``native.streaming_task`` documents the same route in OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from launch.server.streams import NDJSON_TYPE, SSE_TYPE, OpenStream, ndjson, sse

_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_TYPES = {True: NDJSON_TYPE.encode(), False: SSE_TYPE.encode() + b"; charset=utf-8"}


async def _watch_disconnect(receive: Any, stream: OpenStream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.close()  # stops the body below and the generator on the worker


async def relay(stream: OpenStream, as_ndjson: bool, receive: Any, send: Any) -> None:
    """Send the stream as the response (200; the final event says whether it succeeded)."""
    watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, stream))
    try:
        headers = [(b"content-type", _TYPES[as_ndjson]), *_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for piece in stream.body(ndjson if as_ndjson else sse):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        stream.close()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
