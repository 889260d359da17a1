"""The hot routes (``routes.Route`` tables: predictions, task polls) as a bare ASGI handler in front of
FastAPI: they skip routing, dependency injection and response classes, yet authenticate, limit and map
errors the same way. FastAPI documents the same routes (``FastPath.document``); should it ever be handed one
of them, it answers through ``FastPath.serve`` too, so both give the same bytes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Security
from fastapi.responses import Response

from launch.server.api.errors import storage_error
from launch.server.api.openapi import basic_auth, bearer_auth, errors
from launch.server.api.routes import Call, Reply, Route, RouteTable
from launch.server.domain.errors import LaunchError, PayloadTooLarge, Unauthenticated

if TYPE_CHECKING:
    from launch.server.app import Services

log = logging.getLogger("launch.api")
_JSON = (b"content-type", b"application/json")
_AUTHENTICATE = (b"www-authenticate", b'Basic realm="launch"')


class FastPath:
    def __init__(self, app: Any, services: Services, routes: list[Route], max_bytes: int) -> None:
        self.app = app
        self.services = services
        self.table = RouteTable(routes)
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            matched = self.table.match(scope["method"], scope["path"])
            if matched is not None:
                await self.serve(matched[0], matched[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def serve(self, route: Route, params: dict[str, str], scope: dict[str, Any], receive: Any,
                    send: Any) -> None:
        """Answer one request to ``route``: the only implementation of the hot routes' transport."""
        call = Call(scope, receive, send, params, self.services, self.max_bytes)
        try:
            if route.reads_body:
                self._check_declared_length(scope)
            result = await route.handler(call)
        except LaunchError as exc:
            result = error_reply(exc)
        except Exception as exc:
            mapped = storage_error(exc)
            if mapped is None:
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
                mapped = LaunchError(f"internal server error: {type(exc).__name__}")
            else:
                log.warning("%s %s: %s", scope["method"], scope["path"], exc)
            result = error_reply(mapped)
        if result is None:  # the handler sent its response itself
            return
        if isinstance(result, Reply):
            status, body, headers = result.status, result.body, [*result.headers]
        else:
            status, body, headers = 200, result, [_JSON]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

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
    headers = ((_JSON, _AUTHENTICATE) if isinstance(exc, Unauthenticated) else (_JSON,))
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
