"""The prediction routes (sync predict, async submit and poll) as a bare ASGI handler in front of FastAPI: the hot
paths skip routing, dependency injection and response classes (they still authenticate, limit and map errors
the same way). OpenAPI documents the same routes through ``native.sync_task``, ``native.async_task`` and
``native.get_task``.

Every request through here is counted and timed in ``Metrics`` (plain ints, no locks) and, when enabled,
appended to the buffered ``AccessLog``; both happen after the response is sent. Each request gets an id
(``X-Request-Id`` from the client when it is short and plain, else a fresh one; a task's id for task routes),
returned in the ``x-request-id`` header and sent to the worker, whose log lines carry it."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from launch.server.activity import Activity
from launch.server.api.auth import key_from_header
from launch.server.api.errors import storage_error
from launch.server.domain.errors import InvalidRequest, LaunchError, PayloadTooLarge
from launch.server.domain.owners import ApiKeys
from launch.server.logs import AccessLog
from launch.server.metrics import Metrics, outcome_of
from launch.server.predictions import MAX_WAIT_SECONDS, Predictions, RequestTrace

log = logging.getLogger("launch.api")
SYNC_PATH = "/v1/sync-tasks"
ASYNC_PATH = "/v1/async-tasks"
TASK_PREFIX = ASYNC_PATH + "/"
_JSON = [(b"content-type", b"application/json")]
_ROUTES = {SYNC_PATH: "sync", ASYNC_PATH: "async_submit"}
_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class FastPath:
    def __init__(self, app: Any, api_keys: ApiKeys, predictions: Predictions, max_bytes: int,
                 metrics: Metrics | None = None, access_log: AccessLog | None = None,
                 activity: Activity | None = None) -> None:
        self.app = app
        self.api_keys = api_keys
        self.predictions = predictions
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.access_log = access_log
        self.activity = activity or Activity()
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}-"

    def _request_id(self, scope: dict[str, Any]) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _CLIENT_ID.match(value):
                return value.decode()
        return f"{self._id_prefix}{next(self._ids):x}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if (method == "POST" and path in (SYNC_PATH, ASYNC_PATH)) or (
            method == "GET" and path.startswith(TASK_PREFIX) and "/" not in path[len(TASK_PREFIX):]
        ):
            metrics, access_log = self.metrics, self.access_log
            if metrics is None and access_log is None:
                status, body = await self._respond(method, path, scope, receive, None)
                await _send(send, status, body, None)
                return
            started = time.perf_counter()
            trace = RequestTrace(self._request_id(scope))
            if metrics is not None:
                metrics.inflight += 1
            try:
                status, body = await self._respond(method, path, scope, receive, trace)
                await _send(send, status, body, trace.request_id)
            finally:
                if metrics is not None:
                    metrics.inflight -= 1
            self._observe(scope, method, path, status, body, trace, time.perf_counter() - started)
            return
        if self.access_log is not None or self.metrics is not None:
            await self._other(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _respond(self, method: str, path: str, scope: dict[str, Any], receive: Any,
                       trace: RequestTrace | None) -> tuple[int, bytes]:
        """(status, JSON body) of a fast-path request; errors mapped to their JSON responses."""
        try:
            return 200, await self._handle(path, scope, receive, trace)
        except LaunchError as exc:
            return exc.status_code, orjson.dumps({"detail": exc.detail})
        except Exception as exc:
            mapped = storage_error(exc)
            if mapped is None:
                log.exception("unexpected error on %s %s", method, path)
                mapped = LaunchError(f"internal server error: {type(exc).__name__}")
            return mapped.status_code, orjson.dumps({"detail": mapped.detail})

    def _observe(self, scope: dict[str, Any], method: str, path: str, status: int, body: bytes,
                 trace: RequestTrace, seconds: float) -> None:
        """After the response: count, time and log the request (and keep a failure's traceback)."""
        route = _ROUTES.get(path, "task_poll")
        outcome = outcome_of(status, body)
        if self.metrics is not None:
            self.metrics.request(route, trace.endpoint_id, outcome, seconds)
        if outcome == "failure" and route == "sync":
            self.activity.failed(trace.owner, trace.endpoint_id, "sync", trace.request_id,
                                 _traceback_of(body))
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.record((time.time(), client[0] if client else "-", method, path, status, seconds,
                                    trace.request_id, trace.owner, trace.endpoint_name))

    async def _other(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The FastAPI routes: counted (route "other") and access-logged like the fast ones."""
        started = time.perf_counter()
        status = 500

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            seconds = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.request("other", "", outcome_of(status, b""), seconds)
            if self.access_log is not None:
                client = scope.get("client")
                self.access_log.record((time.time(), client[0] if client else "-", scope["method"], scope["path"],
                                        status, seconds, "", "", ""))

    async def _owner(self, scope: dict[str, Any], trace: RequestTrace | None) -> str:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        owner = await self.api_keys.authenticate(key_from_header(authorization))
        if trace is not None:
            trace.owner = owner
        return owner

    async def _handle(self, path: str, scope: dict[str, Any], receive: Any, trace: RequestTrace | None) -> bytes:
        query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
        if path.startswith(TASK_PREFIX):
            task_id = path[len(TASK_PREFIX):]
            if trace is not None:
                trace.request_id = task_id[:64]
            owner = await self._owner(scope, trace)
            wait = _wait_seconds(_first(query, "wait"))
            return orjson.dumps(await self.predictions.task_view(owner, task_id, wait, trace))
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
        owner = await self._owner(scope, trace)
        endpoint = endpoint_ref(_first(query, "model_endpoint_name"), _first(query, "model_endpoint_id"))
        body = await self._body(receive)
        if path == SYNC_PATH:
            return await self.predictions.sync(owner, endpoint, body, trace)
        task_id = await self.predictions.submit(owner, endpoint, body, trace)
        if trace is not None:
            trace.request_id = task_id  # from here on the task's id is the one that follows it
        return orjson.dumps({"task_id": task_id})

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


async def _send(send: Any, status: int, body: bytes, request_id: str | None) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _traceback_of(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("traceback") if isinstance(data, dict) else None
