"""Minimal raw-ASGI helpers shared by the floor servers (no framework on purpose)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def stream(send: Send, items: Iterator[str]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    for item in items:
        await send({"type": "http.response.body", "body": item.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def success(result: Any) -> bytes:
    """The same envelope Launch answers with: the result as a JSON string inside a JSON object."""
    return json.dumps({"status": "SUCCESS", "result": json.dumps(result)}).encode()


def failure(message: str) -> bytes:
    return json.dumps({"status": "FAILURE", "traceback": message}).encode()


def serve(app: ASGIApp, port: int) -> None:
    """uvicorn with uvloop and httptools, no access log: the fastest stock configuration."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
