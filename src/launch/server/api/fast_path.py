"""The prediction routes (sync predict, async submit and poll) as a bare ASGI handler in front of FastAPI: the hot
paths skip routing, dependency injection and response classes (they still authenticate, limit and map errors
the same way). OpenAPI documents the same routes through ``native.sync_task``, ``native.async_task`` and
``native.get_task``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import orjson

from launch.server.api.auth import key_from_header
from launch.server.api.errors import storage_error
from launch.server.domain.errors import InvalidRequest, LaunchError, PayloadTooLarge
from launch.server.domain.owners import ApiKeys
from launch.server.predictions import MAX_WAIT_SECONDS, Predictions

log = logging.getLogger("launch.api")
SYNC_PATH = "/v1/sync-tasks"
ASYNC_PATH = "/v1/async-tasks"
TASK_PREFIX = ASYNC_PATH + "/"
_JSON = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app: Any, api_keys: ApiKeys, predictions: Predictions, max_bytes: int) -> None:
        self.app = app
        self.api_keys = api_keys
        self.predictions = predictions
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if (method == "POST" and path in (SYNC_PATH, ASYNC_PATH)) or (
            method == "GET" and path.startswith(TASK_PREFIX) and "/" not in path[len(TASK_PREFIX):]
        ):
            try:
                status, body = 200, await self._handle(path, scope, receive)
            except LaunchError as exc:
                status, body = exc.status_code, orjson.dumps({"detail": exc.detail})
            except Exception as exc:
                mapped = storage_error(exc)
                if mapped is None:
                    log.exception("unexpected error on %s %s", method, path)
                    mapped = LaunchError(f"internal server error: {type(exc).__name__}")
                status, body = mapped.status_code, orjson.dumps({"detail": mapped.detail})
            headers = [*_JSON, (b"content-length", str(len(body)).encode())]
            if status == 401:  # as api.errors answers it on every other route
                headers.append((b"www-authenticate", b'Basic realm="launch"'))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    async def _owner(self, scope: dict[str, Any]) -> str:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        return await self.api_keys.authenticate(key_from_header(authorization))

    async def _handle(self, path: str, scope: dict[str, Any], receive: Any) -> bytes:
        query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
        if path.startswith(TASK_PREFIX):
            owner = await self._owner(scope)
            wait = _wait_seconds(_first(query, "wait"))
            return orjson.dumps(await self.predictions.task_view(owner, path[len(TASK_PREFIX):], wait))
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
        owner = await self._owner(scope)
        endpoint = endpoint_ref(_first(query, "model_endpoint_name"), _first(query, "model_endpoint_id"))
        body = await self._body(receive)
        if path == SYNC_PATH:
            return await self.predictions.sync(owner, endpoint, body)
        return orjson.dumps({"task_id": await self.predictions.submit(owner, endpoint, body)})

    async def _body(self, receive: Any) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks) if len(chunks) > 1 else chunks[0]


def endpoint_ref(model_endpoint_name: str | None = None, model_endpoint_id: str | None = None) -> str:
    """The endpoint a task is for, by name or by id (Launch's v1 API uses ids)."""
    ref = model_endpoint_name or model_endpoint_id
    if not ref:
        raise InvalidRequest("query parameter model_endpoint_name (or model_endpoint_id) is required")
    return ref


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _wait_seconds(value: str | None) -> float:
    if value is None:
        return 0.0
    try:
        wait = float(value)
    except ValueError:
        raise InvalidRequest("wait must be a number of seconds") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT_SECONDS:.0f} seconds")
    return wait
