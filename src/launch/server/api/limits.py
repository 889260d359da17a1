"""Request body size limit (ASGI middleware): 413 with a JSON detail, before the body is buffered.

A declared Content-Length over the limit is refused at once. A body without one (chunked) is counted as
it arrives: past the limit the client gets the 413, and the application sees the client disconnect (so no
framework turns the cut-off body into a 400) and its own response is dropped.

Routes with limits of their own (uploads: ``own_limits``, path prefix → bytes) stream their body to the
application, which counts it; only a declared Content-Length over their limit is refused here, at once
(never wait for gigabytes that a client only announced).
"""

from __future__ import annotations

from typing import Any

import orjson


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int, own_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_limits = dict(own_limits or {})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own = next((limit for prefix, limit in self.own_limits.items() if scope["path"].startswith(prefix)), None)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > (own or self.max_bytes):
                await self._reject(send, own or self.max_bytes)
                return
        if own is not None:
            await self.app(scope, receive, send)
            return
        received = 0
        rejected = started = False

        async def limited_receive() -> Any:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes and not started:
                rejected = True
                await self._reject(send, self.max_bytes)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if rejected:
                return
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Any, limit: int) -> None:
        body = orjson.dumps({"detail": f"request body is over the limit of {limit} bytes"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
