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
from launch.server.domain.errors import InvalidRequest, LaunchError, PredictionTimeout
from launch.server.predictions import MAX_WAIT_SECONDS

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


def task_object(native: dict[str, Any]) -> dict[str, Any]:
    """A native task view as the 0.3.3 client reads it: ``state`` instead of ``status`` (last)."""
    view = dict(native)
    view["state"] = view.pop("status", None)
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
    return await call.services.predictions.sync(owner, endpoint, await call.body())


async def async_task(call: Call) -> bytes:
    owner = await call.owner()
    endpoint = endpoint_ref(call.query("model_endpoint_name"), call.query("model_endpoint_id"))
    return orjson.dumps({"task_id": await call.services.predictions.submit(owner, endpoint, await call.body())})


async def get_task(call: Call) -> bytes:
    owner = await call.owner()
    wait = wait_seconds(call.query("wait"))
    return orjson.dumps(await call.services.predictions.task_view(owner, call.params["task_id"], wait))


# -- legacy ---------------------------------------------------------------------------------------------------
async def legacy_sync_task(call: Call) -> bytes:
    owner = await call.owner()
    try:
        body = await call.services.predictions.sync(owner, call.params["endpoint_name"], await call.body())
    except PredictionTimeout as exc:
        raise SyncTimeout(exc.detail) from None
    return legacy_task_body(body)


async def legacy_async_task(call: Call) -> bytes:
    owner = await call.owner()
    task_id = await call.services.predictions.submit(owner, call.params["endpoint_name"], await call.body())
    return orjson.dumps({"task_id": task_id})


async def legacy_get_task(call: Call) -> bytes:
    """Tasks are looked up among the caller's own by id, so a task outlives its endpoint's deletion."""
    owner = await call.owner()
    return orjson.dumps(task_object(await call.services.predictions.task_view(owner, call.params["task_id"])))


# -- documentation ----------------------------------------------------------------------------------------------
_TASK_SCHEMA = {
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

_ENDPOINT_QUERY = [
    {"name": "model_endpoint_name", "in": "query", "required": False, "description": "The endpoint, by name",
     "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
    {"name": "model_endpoint_id", "in": "query", "required": False,
     "description": "The endpoint, by id (instead of its name)",
     "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
]
_WAIT_QUERY = [{"name": "wait", "in": "query", "required": False,
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0}}]

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
          description="Poll ``GET /v1/async-tasks/{task_id}`` for its result.",
          openapi_extra={"parameters": _ENDPOINT_QUERY, **_TASK_BODY}),
    Route("GET", "/v1/async-tasks/{task_id}", get_task, "get_task", tags=("tasks",), responses=(401, 404),
          summary="A task's status and result",
          description="PENDING, SUCCESS or FAILURE, with the result. ``wait`` (seconds): answer as soon as the "
                      "task ends, or after that long (long-poll).",
          openapi_extra={"parameters": _WAIT_QUERY}),
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
