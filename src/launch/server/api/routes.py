"""One table of the hot routes (predictions, task polls, ...): the bare ASGI handler (``fast_path.FastPath``)
serves them and FastAPI documents them, both built from the same ``Route`` entries.

Add a hot route by appending a ``Route`` to a table (``prediction_routes.ROUTES``), never with a FastAPI
decorator: ``tests/unit/test_route_table.py`` fails when a prediction route is served by anything but the
fast path. A handler gets a ``Call`` (headers, path parameters, query, owner, body) and returns the 200 JSON
body as bytes, a ``Reply`` for another status or headers, or ``None`` after sending the response itself
through ``call.send`` (streaming).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from launch.server.api.auth import key_from_header
from launch.server.domain.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from launch.server.app import Services
    from launch.server.predictions import RequestTrace


@dataclass(frozen=True, slots=True)
class Reply:
    """A response other than ``200`` with a JSON body."""

    body: bytes
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)


Handler = Callable[["Call"], Awaitable["bytes | Reply | None"]]


class Call:
    """One request to a table route, as its handler sees it. Nothing is parsed until asked for."""

    __slots__ = ("_query", "max_bytes", "params", "receive", "scope", "send", "services", "trace")

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, params: dict[str, str],
                 services: Services, max_bytes: int) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.params = params
        self.services = services
        self.max_bytes = max_bytes
        self._query: dict[str, list[str]] | None = None
        self.trace: RequestTrace | None = None  # set by the fast path when metrics or the access log are on

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    def query(self, name: str) -> str | None:
        """The first value of a query parameter."""
        if self._query is None:
            raw = self.scope.get("query_string") or b""
            self._query = _parse_query(raw.decode("latin-1")) if raw else {}
        values = self._query.get(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        """Every value of a repeatable query parameter."""
        self.query(name)
        assert self._query is not None
        return list(self._query.get(name, []))

    async def owner(self) -> str:
        """The authenticated owner (API key as basic-auth user name or bearer token); 401 otherwise."""
        authorization = self.header(b"authorization")
        key = key_from_header(authorization.decode("latin-1") if authorization is not None else None)
        owner = await self.services.api_keys.authenticate(key)
        if self.trace is not None:
            self.trace.owner = owner
        return owner

    async def body(self) -> bytes:
        """The whole request body, joined once; 413 as soon as it is over the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body"):
                if len(chunks) == 1:
                    return chunks[0]
                return b"".join(chunks)


def _parse_query(text: str) -> dict[str, list[str]]:
    """``parse_qs`` (blank values dropped), without its cost on the usual plain query (no escapes)."""
    if "%" in text or "+" in text:
        return parse_qs(text)
    query: dict[str, list[str]] = {}
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value:
            query.setdefault(name, []).append(value)
    return query


@dataclass(frozen=True)
class Route:
    """One hot route. ``path`` is a Starlette-style template: ``{name}`` matches one non-empty segment.

    ``reads_body``: a declared Content-Length over the limit is refused (413) before anything else, as
    ``limits.BodySizeLimit`` does for the other routes. The documentation fields go to OpenAPI as they are.
    """

    method: str
    path: str
    handler: Handler
    name: str
    reads_body: bool = False
    responses: tuple[int, ...] = ()  # the error statuses it answers (OpenAPI)
    tags: tuple[str, ...] = ()
    summary: str | None = None
    description: str | None = None
    openapi_extra: dict[str, Any] = field(default_factory=dict)

    def segments(self) -> tuple[str, tuple[str, ...]]:
        """(static prefix up to the first parameter, the remaining segments)."""
        start = self.path.find("{")
        if start < 0:
            return self.path, ()
        prefix = self.path[:start]
        return prefix, tuple(self.path[start:].split("/"))


class RouteTable:
    """Matches (method, path) to a route: exact paths by one dict lookup, templated ones by prefix and
    segments (a handful of them, checked in order)."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = list(routes)
        self._exact: dict[tuple[str, str], Route] = {}
        self._templated: dict[str, list[tuple[str, tuple[str, ...], Route]]] = {}
        for route in self.routes:
            prefix, rest = route.segments()
            if not rest:
                if (route.method, prefix) in self._exact:
                    raise ValueError(f"two routes for {route.method} {route.path}")
                self._exact[(route.method, prefix)] = route
            else:
                self._templated.setdefault(route.method, []).append((prefix, rest, route))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        for prefix, rest, route in self._templated.get(method, ()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            if len(parts) != len(rest):
                continue
            params: dict[str, str] = {}
            for part, pattern in zip(parts, rest, strict=True):
                if pattern.startswith("{"):
                    if not part:
                        break
                    params[pattern[1:-1]] = part
                elif part != pattern:
                    break
            else:
                return route, params
        return None
