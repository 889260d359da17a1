"""The worker's HTTP interface (raw ASGI, no framework on the hot path).

``POST /predict`` takes ``{"args": {...}}`` or ``{"url": "..."}`` plus ``return_pickled`` and answers 200 with
``{"status": "SUCCESS", "result": "<json>"}``, with the pickled bytes (content type ``PICKLE_TYPE``), or
with ``{"status": "FAILURE", "traceback": "..."}``. ``GET /healthz`` answers 200 while the worker serves.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from launch.worker.runtime import Outcome, Runtime

PICKLE_TYPE = b"application/x-launch-pickle"
JSON_TYPE = b"application/json"
Scope = dict[str, Any]


def outcome_body(outcome: Outcome) -> tuple[bytes, bytes]:
    """(content type, body) for an outcome."""
    if outcome.pickled is not None:
        return PICKLE_TYPE, outcome.pickled
    if outcome.ok:
        return JSON_TYPE, orjson.dumps({"status": "SUCCESS", "result": outcome.result})
    return JSON_TYPE, orjson.dumps({"status": "FAILURE", "traceback": outcome.traceback})


class WorkerApp:
    def __init__(self, runtime: Runtime, threads: int) -> None:
        self.runtime = runtime
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="predict")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/predict" and method == "POST":
            body = await _read_body(receive)
            await self._predict(body, send)
        elif path == "/healthz":
            await _respond(send, 200, JSON_TYPE, b'{"status":"ok"}')
        else:
            await _respond(send, 404, JSON_TYPE, b'{"detail":"not found"}')

    async def _predict(self, body: bytes, send: Any) -> None:
        try:
            request = orjson.loads(body)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            await _respond(send, 400, JSON_TYPE, orjson.dumps({"detail": f"invalid request: {exc}"}))
            return
        if self.runtime.is_async and not request.get("url"):
            outcome = await self.runtime.run_async(request)
        else:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self.executor, self.runtime.run, request)
        content_type, payload = outcome_body(outcome)
        await _respond(send, 200, content_type, payload)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
