"""Every prediction route is served by the fast path, and the route table's pure parts.

``PREDICTION_ROUTES`` is written out by hand from the API (native) and shared/spec/legacy-api.md (rows 13-16):
if a route drops out of ``prediction_routes.ROUTES`` or stops matching, FastAPI would answer it (slowly) and
the tripwire below fails. A prediction route added with a FastAPI decorator instead of the table fails
``test_no_prediction_route_outside_the_table``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from launch.server.api.fast_path import FastPath
from launch.server.api.prediction_routes import ROUTES, legacy_task_body, task_object
from launch.server.api.routes import Route, RouteTable, _parse_query
from launch.server.app import build_app
from launch.server.settings import Settings

PREDICTION_ROUTES = [
    ("POST", "/v1/sync-tasks?model_endpoint_name=nope"),
    ("POST", "/v1/async-tasks?model_endpoint_name=nope"),
    ("GET", "/v1/async-tasks/t-1"),
    ("GET", "/v1/async-tasks/t-1?wait=1"),
    ("POST", "/v1/streaming-tasks?model_endpoint_name=nope"),
    ("GET", "/v1/async-tasks/t-1/events"),
    ("GET", "/v1/async-tasks"),
    ("DELETE", "/v1/async-tasks/t-1"),
    ("POST", "/v1/hosted_inference/task_sync/nope"),
    ("POST", "/v1/hosted_inference/task_async/nope"),
    ("GET", "/v1/hosted_inference/endpoints/nope/task_async/t-1"),
    ("GET", "/v1/hosted_inference/task/result/t-1"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastPath]:
    fast_path = build_app(Settings(data_dir=Path(tmp_path_factory.mktemp("routes"))))
    yield fast_path
    fast_path.services.tasks.db.writer.close()
    if fast_path.services.data_dir_lock is not None:
        fast_path.services.data_dir_lock.close()


def _request(fast_path: FastPath, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, list[str]]:
    """Send one request through the whole ASGI app with FastAPI replaced by a tripwire that records what
    reached it (and answers 599)."""
    reached: list[str] = []
    framework = fast_path.app

    async def tripwire(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=fast_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    fast_path.app = tripwire
    try:
        return asyncio.run(go()), reached
    finally:
        fast_path.app = framework


@pytest.mark.parametrize(("method", "url"), PREDICTION_ROUTES)
def test_every_prediction_route_takes_the_fast_path(app: FastPath, method: str, url: str) -> None:
    content = b'{"args": {"x": 1}}' if method == "POST" else None
    response, reached = _request(app, method, url, content=content)
    assert reached == [], f"{method} {url} fell off the fast path"
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="launch"'
    assert response.json()["detail"].startswith("missing API key")


@pytest.mark.parametrize(("method", "url"), [
    ("GET", "/v1/sync-tasks"),  # wrong method: FastAPI's 405
    ("POST", "/v1/async-tasks/t-1"),
    ("GET", "/v1/hosted_inference/task_sync/nope/extra"),
    ("POST", "/v1/hosted_inference/task_sync/"),
    ("GET", "/v1/model-endpoints"),
])
def test_other_requests_go_to_fastapi(app: FastPath, method: str, url: str) -> None:
    response, reached = _request(app, method, url)
    assert reached and response.status_code == 599


def test_fastapi_answers_a_table_route_with_the_same_bytes(app: FastPath) -> None:
    """Should FastAPI ever be handed a table route, it answers through the same code."""

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as fast, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app), base_url="http://t") as slow:
            url = "/v1/hosted_inference/task_sync/nope"
            return await fast.post(url, content=b"{}"), await slow.post(url, content=b"{}")

    fast, slow = asyncio.run(go())
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)


def test_no_prediction_route_outside_the_table(app: FastPath) -> None:
    """A FastAPI route whose handler calls the prediction service must be one the table generated."""
    table = {(route.method, route.path) for route in ROUTES}
    documented = set()
    for route in app.app.routes:
        if not isinstance(route, APIRoute):
            continue
        pair = {(method, route.path) for method in route.methods}
        if pair & table:
            documented |= pair & table
            continue
        source = inspect.getsource(route.endpoint)
        assert "predictions." not in source, f"{route.path} serves predictions outside the fast path's table"
    assert documented == table


def test_the_openapi_document_shows_the_table_routes(app: FastPath) -> None:
    paths = app.app.openapi()["paths"]
    for route in ROUTES:
        operation = paths[route.path][route.method.lower()]
        names = {p["name"] for p in operation.get("parameters", [])}
        assert {part[1:-1] for part in route.path.split("/") if part.startswith("{")} <= names
        assert ("requestBody" in operation) == route.reads_body


# -- pure parts ---------------------------------------------------------------------------------------------
async def _nothing(_: Any) -> bytes:
    return b""


def test_route_table_matching() -> None:
    table = RouteTable([
        Route("POST", "/a", _nothing, "a"),
        Route("GET", "/a/{id}", _nothing, "a_id"),
        Route("GET", "/p/{x}/q/{y}", _nothing, "pq"),
    ])
    assert table.match("POST", "/a") is not None
    assert table.match("GET", "/a") is None
    match = table.match("GET", "/a/42")
    assert match is not None and match[0].name == "a_id" and match[1] == {"id": "42"}
    assert table.match("GET", "/a/") is None
    assert table.match("GET", "/a/1/2") is None
    match = table.match("GET", "/p/1/q/2")
    assert match is not None and match[1] == {"x": "1", "y": "2"}
    assert table.match("GET", "/p/1/r/2") is None
    with pytest.raises(ValueError):
        RouteTable([Route("POST", "/a", _nothing, "a"), Route("POST", "/a", _nothing, "b")])


def _old_legacy_rendering(native: bytes) -> bytes:
    """How the FastAPI legacy route rendered a sync result (Starlette's JSONResponse)."""
    return json.dumps(task_object(orjson.loads(native)), ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()


@pytest.mark.parametrize("native", [
    {"status": "SUCCESS", "result": json.dumps({"y": [1, 2.5, "é\n\"\\", None]})},
    {"status": "SUCCESS", "result": "null"},
    {"status": "SUCCESS", "result_url": "http://127.0.0.1/v1/results/abc"},
    {"status": "FAILURE", "traceback": "Traceback (most recent call last):\n  ValueError: \u2028\x00"},
])
def test_legacy_sync_body_is_byte_for_byte_the_old_one(native: dict[str, Any]) -> None:
    body = orjson.dumps(native)
    assert legacy_task_body(body) == _old_legacy_rendering(body)


def test_legacy_sync_body_of_another_shape_is_renamed_by_parsing() -> None:
    body = b'{"result": "1", "status": "SUCCESS"}'
    assert legacy_task_body(body) == b'{"result":"1","state":"SUCCESS"}'


@pytest.mark.parametrize("query", ["a=1&b=2&a=3", "a=&b=1", "a", "", "x=1&&y=2", "a=b=c", "n=%20x+y&n=%zz",
                                   "a=1;b=2", "model_endpoint_name=echo-ep&wait=30"])
def test_the_query_parser_agrees_with_parse_qs(query: str) -> None:
    assert _parse_query(query) == parse_qs(query)
