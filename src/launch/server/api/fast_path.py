"""The hot routes (``routes.Route`` tables: predictions, task polls) as a bare ASGI handler in front of
FastAPI: they skip routing, dependency injection and response classes, yet authenticate, limit and map
errors the same way. FastAPI documents the same routes (``FastPath.document``); should it ever be handed one
of them, it answers through ``FastPath.serve`` too, so both give the same bytes.

Every request is counted and timed in ``Metrics`` (plain ints, no locks; the route's name is its label) and,
when enabled, appended to the buffered ``AccessLog``, both after the response is sent. A table route's request
gets an id (``X-Request-Id`` from the client when it is short and plain, else a fresh one; a task's id on task
routes) that goes to the worker, whose log lines carry it, and into the access log; a client's own id is echoed
in the ``x-request-id`` response header."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Security
from fastapi.responses import Response

from launch.server.api.errors import error_headers, storage_error
from launch.server.api.one_write import send_whole
from launch.server.api.openapi import basic_auth, bearer_auth, errors
from launch.server.api.routes import Call, Reply, Route, RouteTable
from launch.server.domain.errors import LaunchError, PayloadTooLarge
from launch.server.metrics import outcome_of
from launch.server.predictions import RequestTrace

if TYPE_CHECKING:
    from launch.server.app import Services

log = logging.getLogger("launch.api")
_JSON = (b"content-type", b"application/json")
_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_SYNC_ROUTES = frozenset({"sync_task", "legacy_sync_task"})  # their failures keep a traceback for the dashboard


class FastPath:
    def __init__(self, app: Any, services: Services, routes: list[Route], max_bytes: int) -> None:
        self.app = app
        self.services = services
        self.table = RouteTable(routes)
        self.max_bytes = max_bytes
        self.metrics = services.metrics if services.settings.metrics_enabled else None
        self.access_log = services.access_log
        self.activity = services.activity
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}-"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            matched = self.table.match(scope["method"], scope["path"])
            if matched is not None:
                await self.serve(matched[0], matched[1], scope, receive, send)
                return
            if self.metrics is not None or self.access_log is not None:
                await self._other(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def serve(self, route: Route, params: dict[str, str], scope: dict[str, Any], receive: Any,
                    send: Any) -> None:
        """Answer one request to ``route``: the only implementation of the hot routes' transport."""
        call = Call(scope, receive, send, params, self.services, self.max_bytes)
        metrics = self.metrics
        if metrics is None and self.access_log is None:
            await self._send(send, await self._result(route, call, scope), None)
            return
        started = time.perf_counter()
        client_id = _client_request_id(scope)
        trace = call.trace = RequestTrace(client_id or f"{self._id_prefix}{next(self._ids):x}")
        if metrics is not None:
            metrics.inflight += 1
        try:
            status, body = await self._send(send, await self._result(route, call, scope), client_id)
        finally:
            if metrics is not None:
                metrics.inflight -= 1
        self._observe(route.name, scope, status, body, trace, time.perf_counter() - started)

    async def _result(self, route: Route, call: Call, scope: dict[str, Any]) -> bytes | Reply | None:
        """The handler's answer, or the error reply it raised."""
        try:
            if route.reads_body:
                self._check_declared_length(scope)
            return await route.handler(call)
        except LaunchError as exc:
            return error_reply(exc)
        except Exception as exc:
            mapped = storage_error(exc)
            if mapped is None:
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
                mapped = LaunchError(f"internal server error: {type(exc).__name__}")
            else:
                log.warning("%s %s: %s", scope["method"], scope["path"], exc)
            return error_reply(mapped)

    async def _send(self, send: Any, result: bytes | Reply | None, request_id: str | None) -> tuple[int, bytes]:
        """Send the response; (status, body) for the metrics (200 and no body when the handler streamed)."""
        if result is None:  # the handler sent its response itself
            return 200, b""
        if isinstance(result, Reply):
            status, body, headers = result.status, result.body, [*result.headers]
        else:
            status, body, headers = 200, result, [_JSON]
        if request_id is not None:  # the client's own id, echoed (ids made here are in the logs)
            headers.append((b"x-request-id", request_id.encode()))
        if send_whole(send, status, headers, body):
            return status, body
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status, body

    def _observe(self, route: str, scope: dict[str, Any], status: int, body: bytes, trace: RequestTrace,
                 seconds: float) -> None:
        """After the response: count, time and log the request (and keep a failure's traceback)."""
        outcome = outcome_of(status, body)
        if self.metrics is not None:
            self.metrics.request(route, trace.endpoint_id, outcome, seconds)
        if outcome == "failure" and route in _SYNC_ROUTES:
            self.activity.failed(trace.owner, trace.endpoint_id, "sync", trace.request_id, _traceback_of(body))
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.record((time.time(), client[0] if client else "-", scope["method"], scope["path"],
                                    status, seconds, trace.request_id, trace.owner, trace.endpoint_name))

    async def _other(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The FastAPI routes: counted (route "other", no endpoint) and access-logged like the hot ones."""
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

    def _check_declared_length(self, scope: dict[str, Any]) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")

    def document(self, app: FastAPI) -> None:
        """Register every table route with FastAPI for the OpenAPI document (and 405s for other methods).
        Call before any catch-all route of the same prefix."""
        for route in self.table.routes:
            app.add_api_route(
                route.path, _fastapi_endpoint(self, route), methods=[route.method], name=route.name,
                tags=list(route.tags) or None, summary=route.summary, description=route.description or "",
                openapi_extra=_openapi(route), response_class=Response, responses=errors(*route.responses),
                dependencies=[Security(basic_auth), Security(bearer_auth)],  # the document's security schemes
            )


def error_reply(exc: LaunchError) -> Reply:
    extra = error_headers(exc) or {}
    headers = (_JSON, *((k.lower().encode(), v.encode()) for k, v in extra.items()))
    return Reply(orjson.dumps({"detail": exc.detail}), exc.status_code, headers)


class _Served(Response):
    """What FastAPI returns for a table route: the fast path's own answer."""

    def __init__(self, fast_path: FastPath, route: Route, params: dict[str, str]) -> None:
        super().__init__()
        self.fast_path, self.route, self.params = fast_path, route, params

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.fast_path.serve(self.route, self.params, scope, receive, send)


def _fastapi_endpoint(fast_path: FastPath, route: Route) -> Any:
    async def endpoint(request: Request) -> Response:
        return _Served(fast_path, route, dict(request.path_params))

    endpoint.__name__ = route.name
    endpoint.__doc__ = route.description
    return endpoint


def _openapi(route: Route) -> dict[str, Any]:
    """The route's own OpenAPI fields, with its path parameters (FastAPI only sees the ``Request``)."""
    extra = dict(route.openapi_extra)
    _, rest = route.segments()
    path_params = [{"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                   for part in rest if part.startswith("{")]
    extra["parameters"] = path_params + list(extra.get("parameters", []))
    return extra


def _client_request_id(scope: dict[str, Any]) -> str | None:
    """The client's ``X-Request-Id`` when it is short and plain (it goes into log lines and the worker's frame)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_ID.match(value):
            return bytes(value).decode()
    return None


def _traceback_of(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("traceback") if isinstance(data, dict) else None
