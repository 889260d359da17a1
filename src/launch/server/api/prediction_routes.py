"""Every prediction route, native and legacy (scale-launch 0.3.3), as one ``routes.Route`` table: the fast
path serves exactly these and FastAPI documents exactly these. A new prediction route (streaming, task
events, ...) is a handler here plus one entry in ``ROUTES``.

Legacy answers are the native ones renamed (``status`` → ``state``); a sync result is renamed on its bytes,
so the gateway never parses a result it only passes through.
"""

from __future__ import annotations

from typing import Any

import orjson

from launch.server.api.routes import Call, Route
from launch.server.api.streaming import relay_events, relay_stream
from launch.server.domain.errors import InvalidRequest, LaunchError, PredictionTimeout
from launch.server.predictions import MAX_WAIT_SECONDS
from launch.server.streams import NDJSON_TYPE, SSE_TYPE, wants_ndjson
from launch.server.task_events import task_events

LEGACY = "/v1/hosted_inference"


class SyncTimeout(LaunchError):
    """A sync prediction ran past the server's limit. 408, not 504: the 0.3.3 client retries 504 (three
    more runs of a slow model, and 13 s of sleep) while this one is final."""

    status_code = 408


def endpoint_ref(model_endpoint_name: str | None = None, model_endpoint_id: str | None = None) -> str:
    """The endpoint a task is for, by name or by id (Launch's v1 API uses ids)."""
    ref = model_endpoint_name or model_endpoint_id
    if not ref:
        raise InvalidRequest("query parameter model_endpoint_name (or model_endpoint_id) is required")
    return ref


def wait_seconds(value: str | None) -> float:
    """The ``wait`` query parameter of a task poll (long-poll), in seconds."""
    if value is None:
        return 0.0
    try:
        wait = float(value)
    except ValueError:
        raise InvalidRequest("wait must be a number of seconds") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT_SECONDS:.0f} seconds")
    return wait


LEGACY_STATES = {"STARTED": "PENDING", "CANCELLED": "FAILURE", "EXPIRED": "FAILURE"}


def task_object(native: dict[str, Any]) -> dict[str, Any]:
    """A native task view as the 0.3.3 client reads it: ``state`` instead of ``status`` (last), and only the
    states it knows (PENDING, SUCCESS, FAILURE; its ``get()`` raises on any other): STARTED is still PENDING
    to it, CANCELLED and EXPIRED are FAILUREs whose ``traceback`` says why."""
    view = dict(native)
    status = view.pop("status", None)
    if status in ("CANCELLED", "EXPIRED"):
        view["traceback"] = f"{status}: {view.get('reason') or 'the task did not run to completion'}"
    view["state"] = LEGACY_STATES.get(status, status) if isinstance(status, str) else status
    return view


_FINAL = tuple((b'{"status":"' + state + b'",', b',"state":"' + state + b'"}') for state in (b"SUCCESS", b"FAILURE"))


def legacy_task_body(native: bytes) -> bytes:
    """``task_object`` on the bytes of a native result (``{"status":"SUCCESS",...}`` as workers and
    ``Predictions.sync`` write it): the same bytes ``orjson.dumps(task_object(orjson.loads(native)))`` gives,
    with one copy of the result and no parse."""
    for prefix, suffix in _FINAL:
        if native.startswith(prefix) and native.endswith(b"}"):
            return b"".join((b"{", memoryview(native)[len(prefix):-1], suffix))
    return orjson.dumps(task_object(orjson.loads(native)))


# -- native ---------------------------------------------------------------------------------------------------
async def sync_task(call: Call) -> bytes:
    owner = await call.owner()
    endpoint = endpoint_ref(call.query("model_endpoint_name"), call.query("model_endpoint_id"))
    return await call.services.predictions.sync(owner, endpoint, await call.body(), call.trace)


async def async_task(call: Call) -> bytes:
    owner = await call.owner()
    endpoint = endpoint_ref(call.query("model_endpoint_name"), call.query("model_endpoint_id"))
    return orjson.dumps({"task_id": await _submit(call, owner, endpoint)})


async def list_tasks(call: Call) -> bytes:
    owner = await call.owner()
    endpoint = endpoint_ref(call.query("model_endpoint_name"), call.query("model_endpoint_id"))
    return orjson.dumps(await call.services.predictions.list_tasks(
        owner, endpoint, call.query_all("state"), _number(call.query("since"), "since"),
        int(_number(call.query("limit"), "limit") or 100)))


async def cancel_task(call: Call) -> bytes:
    owner = await call.owner()
    return orjson.dumps(await call.services.predictions.cancel(owner, call.params["task_id"]))


def _number(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number") from None


async def _submit(call: Call, owner: str, endpoint: str) -> str:
    key = call.header(b"idempotency-key")
    task_id = await call.services.predictions.submit(owner, endpoint, await call.body(),
                                                     key.decode("latin-1") if key is not None else None, call.trace)
    if call.trace is not None:
        call.trace.request_id = task_id  # from here on the task's id is the one that follows it
    return task_id


async def _task_view(call: Call, owner: str, wait: float = 0.0) -> dict[str, Any]:
    task_id = call.params["task_id"]
    if call.trace is not None:
        call.trace.request_id = task_id[:64]
    return await call.services.predictions.task_view(owner, task_id, wait, call.trace)


async def get_task(call: Call) -> bytes:
    owner = await call.owner()
    wait = wait_seconds(call.query("wait"))
    return orjson.dumps(await _task_view(call, owner, wait))


async def streaming_task(call: Call) -> None:
    """A streaming prediction: errors before its first item raise (plain JSON), then the items are sent."""
    fmt = call.query("format")
    if fmt is not None and fmt not in ("sse", "ndjson"):
        raise InvalidRequest("format must be 'sse' or 'ndjson'")
    accept = call.header(b"accept")
    as_ndjson = wants_ndjson(accept.decode("latin-1") if accept is not None else None, fmt)
    owner = await call.owner()
    endpoint = endpoint_ref(call.query("model_endpoint_name"), call.query("model_endpoint_id"))
    stream = await call.services.streams.open(owner, endpoint, await call.body())
    await relay_stream(stream, as_ndjson, call.receive, call.send)


async def task_events_stream(call: Call) -> None:
    """A task's state changes as server-sent events (404 before the stream if the task is not the caller's)."""
    owner = await call.owner()
    task_id = call.params["task_id"]
    wait = call.query("wait")
    try:
        seconds = float(wait) if wait is not None else None
    except ValueError:
        raise InvalidRequest("wait must be a number of seconds") from None
    if seconds is not None and not 0 < seconds < float("inf"):
        raise InvalidRequest("wait must be a number of seconds above 0")
    services = call.services
    await services.tasks.get(owner, task_id)
    last = call.header(b"last-event-id")
    events = task_events(services.tasks, services.links, owner, task_id,
                         last.decode("latin-1") if last is not None else None, seconds)
    await relay_events(events, call.receive, call.send)


# -- legacy ---------------------------------------------------------------------------------------------------
async def legacy_sync_task(call: Call) -> bytes:
    owner = await call.owner()
    try:
        body = await call.services.predictions.sync(owner, call.params["endpoint_name"], await call.body(),
                                                    call.trace)
    except PredictionTimeout as exc:
        raise SyncTimeout(exc.detail) from None
    return legacy_task_body(body)


async def legacy_async_task(call: Call) -> bytes:
    owner = await call.owner()
    return orjson.dumps({"task_id": await _submit(call, owner, call.params["endpoint_name"])})


async def legacy_get_task(call: Call) -> bytes:
    """Tasks are looked up among the caller's own by id, so a task outlives its endpoint's deletion."""
    owner = await call.owner()
    return orjson.dumps(task_object(await _task_view(call, owner)))


# -- documentation ----------------------------------------------------------------------------------------------
_TASK_SCHEMA: dict[str, Any] = {
    "title": "TaskRequest", "type": "object",
    "description": "One prediction: keyword `args` for the predict function, or a `url` whose bytes it gets "
                   "(`url` wins when both are sent).",
    "properties": {
        "args": {"type": "object", "description": "Keyword arguments of the predict function"},
        "url": {"type": "string", "minLength": 1, "description": "A file whose bytes the predict function gets"},
        "return_pickled": {"type": "boolean", "default": True,
                           "description": "Answer a `result_url` to the pickled output instead of `result`"},
        "pickle_protocol": {"type": "integer", "minimum": 2, "maximum": 5,
                            "description": "The highest pickle protocol the asking client reads (the SDK sends "
                                           "its own); pickled results use at most this one"},
    },
    "anyOf": [{"required": ["args"]}, {"required": ["url"]}],
}
_TASK_BODY: dict[str, Any] = {"requestBody": {"required": True,
                                              "content": {"application/json": {"schema": _TASK_SCHEMA}}}}
_ASYNC_TASK_SCHEMA = {**_TASK_SCHEMA, "title": "AsyncTaskRequest", "properties": {
    **_TASK_SCHEMA["properties"],
    "priority": {"type": "integer", "default": 0, "minimum": -1000, "maximum": 1000,
                 "description": "Higher runs first among your queued tasks of the endpoint"},
    "queue_ttl_seconds": {"type": "number", "exclusiveMinimum": 0,
                          "description": "EXPIRED (never run) if no worker took it by then"},
    "callback_url": {"type": "string", "description": "Where the outcome is POSTed, signed"},
    "callback_auth": {"type": "object", "description": "{kind: basic, username, password} or "
                                                        "{kind: mtls, cert, key} (PEM)"},
}}
_ASYNC_TASK_BODY: dict[str, Any] = {"requestBody": {
    "required": True, "content": {"application/json": {"schema": _ASYNC_TASK_SCHEMA}}}}
_IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "A repeat with the same body returns the first task's id",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_LIST_QUERY = [
    {"name": "state", "in": "query", "required": False, "schema": {"type": "array", "items": {
        "type": "string", "enum": ["PENDING", "STARTED", "SUCCESS", "FAILURE", "CANCELLED", "EXPIRED"]}}},
    {"name": "since", "in": "query", "required": False, "schema": {"type": "number"}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "default": 100, "minimum": 1, "maximum": 1000}},
]

_ENDPOINT_QUERY = [
    {"name": "model_endpoint_name", "in": "query", "required": False, "description": "The endpoint, by name",
     "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
    {"name": "model_endpoint_id", "in": "query", "required": False,
     "description": "The endpoint, by id (instead of its name)",
     "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
]
_WAIT_QUERY = [{"name": "wait", "in": "query", "required": False,
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0}}]

_STREAM_QUERY = [*_ENDPOINT_QUERY, {
    "name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["sse", "ndjson"]},
    "description": "default: JSON lines if Accept names application/x-ndjson, else server-sent events"}]
_STREAM_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    **_TASK_SCHEMA, "title": "StreamRequest",
    "properties": {k: v for k, v in _TASK_SCHEMA["properties"].items() if k in ("args", "url")},
}}}}}
_STREAM_OK = {"200": {
    "description": "Server-sent events: one `data:` event per item (its JSON), then `event: end` with "
                   '`{"status": "SUCCESS", "items": n}` or `event: error` with `{"status": "FAILURE", '
                   '"traceback"|"detail": ...}`. As JSON lines: `{"item": ...}` per item, then the final object. '
                   "Errors before the first item are plain JSON with a 4xx/5xx status.",
    "content": {SSE_TYPE: {"schema": {"type": "string"}}, NDJSON_TYPE: {"schema": {"type": "string"}}},
}}
_EVENTS_OK = {"200": {
    "description": "Server-sent events `PENDING` (with `queue_position`), `STARTED`, then `SUCCESS` or "
                   "`FAILURE` (the body of `GET /v1/async-tasks/{task_id}`); each with an `id`.",
    "content": {SSE_TYPE: {"schema": {"type": "string"}}},
}}
_EVENTS_QUERY = [
    {"name": "wait", "in": "query", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0},
     "description": "end the stream after this many seconds (the client reconnects); default: until the end"},
    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "the last event's id, to resume without repeats"},
]

ROUTES: list[Route] = [
    Route("POST", "/v1/sync-tasks", sync_task, "sync_task", reads_body=True, tags=("tasks",),
          responses=(401, 404, 409, 502, 504),
          summary="Run one prediction and wait for it",
          description="``{\"args\": {...}}`` or ``{\"url\": \"...\"}``, ``return_pickled``; the endpoint by "
                      "``model_endpoint_name`` or ``model_endpoint_id``.",
          openapi_extra={"parameters": _ENDPOINT_QUERY, **_TASK_BODY}),
    Route("POST", "/v1/async-tasks", async_task, "async_task", reads_body=True, tags=("tasks",),
          responses=(401, 404, 409, 429),
          summary="Queue one prediction",
          description="Poll ``GET /v1/async-tasks/{task_id}`` for its result. Besides ``args`` or ``url``: "
                      "``priority`` (higher first among your tasks), ``queue_ttl_seconds`` (EXPIRED if no worker "
                      "took it by then), ``callback_url`` and ``callback_auth`` (the outcome is POSTed there, "
                      "signed). A repeated ``Idempotency-Key`` header with the same body returns the first "
                      "task's id (409 with another body).",
          openapi_extra={"parameters": [*_ENDPOINT_QUERY, _IDEMPOTENCY_HEADER], **_ASYNC_TASK_BODY}),
    Route("GET", "/v1/async-tasks", list_tasks, "list_tasks", tags=("tasks",), responses=(401, 404),
          summary="Your tasks of one endpoint, newest first",
          description="``state`` (repeatable: PENDING, STARTED, SUCCESS, FAILURE, CANCELLED, EXPIRED), ``since`` "
                      "(unix time of submission), ``limit`` (1-1000, default 100).",
          openapi_extra={"parameters": [*_ENDPOINT_QUERY, *_LIST_QUERY]}),
    Route("GET", "/v1/async-tasks/{task_id}", get_task, "get_task", tags=("tasks",), responses=(401, 404),
          summary="A task's status and result",
          description="PENDING (``queue_position``), STARTED (``attempt``), SUCCESS (``result`` or "
                      "``result_url``), FAILURE (``traceback``, ``reason``, ``attempt``), CANCELLED or EXPIRED "
                      "(``reason``). ``wait`` (seconds): answer as soon as the task ends, or after that long "
                      "(long-poll).",
          openapi_extra={"parameters": _WAIT_QUERY}),
    Route("POST", "/v1/streaming-tasks", streaming_task, "streaming_task", reads_body=True, tags=("tasks",),
          responses=(401, 404, 409, 429, 504),
          summary="Run one prediction of a streaming endpoint and receive its items as they come",
          description="``{\"args\": {...}}`` or ``{\"url\": \"...\"}``. Server-sent events (default), or JSON "
                      "lines with ``Accept: application/x-ndjson`` or ``format=ndjson``.",
          openapi_extra={"parameters": _STREAM_QUERY, **_STREAM_BODY, "responses": _STREAM_OK}),
    Route("GET", "/v1/async-tasks/{task_id}/events", task_events_stream, "task_events", tags=("tasks",),
          responses=(401, 404), summary="Watch a task live",
          description="One server-sent event per state change, ending after SUCCESS or FAILURE. Reconnect with "
                      "``Last-Event-ID`` to resume without repeats.",
          openapi_extra={"parameters": _EVENTS_QUERY, "responses": _EVENTS_OK}),
    Route("DELETE", "/v1/async-tasks/{task_id}", cancel_task, "cancel_task", tags=("tasks",), responses=(401, 404),
          summary="Cancel a task",
          description="A pending task never runs; a running one's result is dropped (its worker is recycled "
                      "when the server runs with ``--cancel-stops-worker``). ``cancelled`` says whether this "
                      "call cancelled it; an ended task is left as it was."),
    Route("POST", LEGACY + "/task_sync/{endpoint_name}", legacy_sync_task, "legacy_sync_task", reads_body=True,
          responses=(401, 404, 408, 409, 502),
          summary="scale-launch 0.3.3: run one prediction", openapi_extra=_TASK_BODY),
    Route("POST", LEGACY + "/task_async/{endpoint_name}", legacy_async_task, "legacy_async_task",
          reads_body=True, responses=(401, 404, 409, 429), summary="scale-launch 0.3.3: queue one prediction",
          openapi_extra=_TASK_BODY),
    Route("GET", LEGACY + "/endpoints/{endpoint_name}/task_async/{task_id}", legacy_get_task,
          "legacy_endpoint_task", responses=(401, 404), summary="scale-launch 0.3.3: a task's state and result"),
    Route("GET", LEGACY + "/task/result/{task_id}", legacy_get_task, "legacy_task_result", responses=(401, 404),
          summary="scale-launch 0.3.3 (deprecated get_async_response): a task's state and result"),
]
