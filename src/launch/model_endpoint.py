"""Endpoints and their requests, responses and futures (the ``launch.model_endpoint`` API of the seed)."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import httpx

from launch.errors import APIError

if TYPE_CHECKING:
    from launch.client import LaunchClient

TASK_PENDING_STATE = "PENDING"
TASK_SUCCESS_STATE = "SUCCESS"
TASK_FAILURE_STATE = "FAILURE"
TASK_STARTED_STATE = "STARTED"
TASK_CANCELLED_STATE = "CANCELLED"
TASK_EXPIRED_STATE = "EXPIRED"
UNFINISHED_STATES = (TASK_PENDING_STATE, TASK_STARTED_STATE)
FINISHED_STATES = (TASK_SUCCESS_STATE, TASK_FAILURE_STATE, TASK_CANCELLED_STATE, TASK_EXPIRED_STATE)
LONG_POLL_SECONDS = 20.0
EVENTS_SECONDS = 60.0  # one task-events connection at most this long, then a reconnect (bounded reads)
RECONNECT_FOR_SECONDS = 120.0  # without a timeout, how long get() keeps reconnecting to an unreachable server

__all__ = [
    "AsyncEndpoint",
    "AsyncEndpointBatchResponse",
    "Endpoint",
    "EndpointRequest",
    "EndpointResponse",
    "EndpointResponseFuture",
    "ModelEndpoint",
    "StreamingEndpoint",
    "SyncEndpoint",
]


@dataclass
class ModelEndpoint:
    """Represents an Endpoint from the database."""

    name: str
    """The name of the endpoint. Must be unique across all endpoints owned by the user."""
    bundle_name: str | None = None
    """The name of the bundle for the endpoint. The owner of the bundle must be the same as the owner for the
    endpoint."""
    status: str | None = None
    """The status of the endpoint."""
    resource_settings: dict | None = None
    """Resource settings for the endpoint."""
    worker_settings: dict | None = None
    """Worker settings for the endpoint."""
    metadata: dict | None = None
    """Metadata for the endpoint."""
    endpoint_type: str | None = None
    """The type of the endpoint: ``'async'``, ``'sync'`` or ``'streaming'``."""
    configs: dict | None = None
    """Config for the endpoint."""
    destination: str | None = None
    """Queue identifier for endpoint, use only for debugging."""
    status_reason: str | None = None
    """Why the endpoint (or its last rollout) failed, when it did."""
    failed_rollout: dict | None = None
    """The last rollout that could not start (``generation``, ``bundle_name``, ``reason``, ``failed_at``) while
    the previous generation, of ``bundle_name``, kept serving; None once a later rollout succeeds."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEndpoint:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __repr__(self) -> str:
        return (
            f"ModelEndpoint(name='{self.name}', bundle_name='{self.bundle_name}', status='{self.status}', "
            f"resource_settings='{json.dumps(self.resource_settings)}', "
            f"worker_settings='{json.dumps(self.worker_settings)}', endpoint_type='{self.endpoint_type}', "
            f"metadata='{self.metadata}', status_reason={self.status_reason!r}, "
            f"failed_rollout={self.failed_rollout!r})"
        )


class EndpointRequest:
    """Represents a single request to either a ``SyncEndpoint`` or ``AsyncEndpoint``.

    Exactly one of ``url`` (a file whose bytes are passed to the predict function) and ``args`` (keyword
    arguments of the predict function) must be given. ``return_pickled`` asks for a pickled result behind a
    ``result_url`` instead of ``result`` as a JSON string. ``request_id`` (deprecated) names the request in a
    batch; one is generated when not given. ``callback_url`` (and ``callback_auth``: ``{"kind": "basic",
    "username", "password"}`` or ``{"kind": "mtls", "cert", "key"}``) receive the outcome of an async task
    when it ends; ``priority`` orders your own queued tasks (higher first).
    """

    def __init__(self, url: str | None = None, args: dict | None = None, return_pickled: bool | None = True,
                 request_id: str | None = None, callback_url: str | None = None,
                 callback_auth: dict[str, str] | None = None, priority: int | None = None) -> None:
        if (url is None) == (args is None):
            raise ValueError("Exactly one of url and args must be specified")
        if url is not None and not isinstance(url, str):
            raise ValueError("url must be a string")
        if args is not None and not isinstance(args, dict):
            raise ValueError("args must be a dictionary of keyword arguments")
        self.url = url
        self.args = args
        self.return_pickled = return_pickled
        self.request_id: str = request_id if request_id is not None else str(uuid.uuid4())
        self.callback_url = callback_url
        self.callback_auth = callback_auth
        self.priority = priority

    def task_options(self) -> dict[str, Any]:
        """The async-only fields of the request body."""
        options = {"callback_url": self.callback_url, "callback_auth": self.callback_auth, "priority": self.priority}
        return {k: v for k, v in options.items() if v is not None}


class EndpointResponse:
    """Represents a response received from a Endpoint: ``status`` (``SUCCESS``, ``FAILURE``, ``PENDING``,
    ``STARTED``, ``CANCELLED`` or ``EXPIRED``), then exactly one of ``result_url`` (pickled output) or
    ``result`` (output as a JSON string), or the ``traceback`` of a predict function that raised (or why the
    task was cancelled or expired)."""

    def __init__(self, client: Any, status: str, result_url: str | None = None, result: str | None = None,
                 traceback: str | None = None) -> None:
        self.client = client
        self.status = status
        self.result_url = result_url
        self.result = result
        self.traceback = traceback

    def __str__(self) -> str:
        return (f"status: {self.status}, result: {self.result}, result_url: {self.result_url}, "
                f"traceback: {self.traceback}")


def _response_from(client: Any, raw: dict[str, Any]) -> EndpointResponse:
    status = raw.get("status", raw.get("state"))
    if status == TASK_FAILURE_STATE:
        return EndpointResponse(client, status, traceback=raw.get("traceback"))
    if status in (TASK_CANCELLED_STATE, TASK_EXPIRED_STATE):
        return EndpointResponse(client, status, traceback=raw.get("reason"))
    return EndpointResponse(client, status, result_url=raw.get("result_url"), result=raw.get("result"),
                            traceback=raw.get("traceback"))


class EndpointResponseFuture:
    """Represents a future response from an Endpoint. When it is ready, ``get`` returns an
    ``EndpointResponse``. This object should not be directly instantiated by the user."""

    def __init__(self, client: LaunchClient, endpoint_name: str, async_task_id: str) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.async_task_id = async_task_id

    def get(self, timeout: float | None = None) -> EndpointResponse:
        """Retrieves the ``EndpointResponse`` for the prediction request after it completes. This method
        blocks (at most ``timeout`` seconds when given, then raises ``TimeoutError``).

        It watches the task's events (``GET /v1/async-tasks/{id}/events``) when the server has them, and
        reconnects if the server restarts meanwhile; otherwise it long-polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if getattr(self.client, "_task_events_supported", True):
            response = self._watch(deadline)
            if response is not None:
                return response
            self.client._task_events_supported = False  # an older server: long-poll from now on
        while True:
            remaining = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            # the server holds the request until the task ends (or the wait is over): no busy polling
            raw = self.client._wait_async_task(self.async_task_id, max(0.0, min(LONG_POLL_SECONDS, remaining)))
            state = raw.get("status", raw.get("state"))
            if state in FINISHED_STATES:
                return _response_from(self.client, raw)
            if state not in UNFINISHED_STATES:
                raise ValueError(f"Unrecognized state: {state}")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.async_task_id} did not finish within {timeout} s")

    def _watch(self, deadline: float | None) -> EndpointResponse | None:
        """The response, from the task's event stream; None if the server has no such stream."""
        last_event_id: str | None = None
        unreachable_since: float | None = None
        while True:
            remaining = EVENTS_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"task {self.async_task_id} did not finish in time")
            try:
                for name, event_id, data in self.client._task_events(self.async_task_id, last_event_id,
                                                                     min(EVENTS_SECONDS, remaining)):
                    unreachable_since = None
                    last_event_id = event_id
                    if name in (TASK_SUCCESS_STATE, TASK_FAILURE_STATE, TASK_CANCELLED_STATE, TASK_EXPIRED_STATE):
                        return _response_from(self.client, data)
                unreachable_since = None
            except APIError as exc:
                if exc.status_code == 404 and exc.detail == "Not Found":  # the route, not the task
                    return None
                if exc.status_code not in (502, 503):
                    raise
                unreachable_since = unreachable_since or time.monotonic()
            except httpx.TransportError:  # the server restarts or the connection dropped: resume
                unreachable_since = unreachable_since or time.monotonic()
            if unreachable_since is not None:
                if deadline is None and time.monotonic() - unreachable_since > RECONNECT_FOR_SECONDS:
                    raise ConnectionError(f"the server stayed unreachable for {RECONNECT_FOR_SECONDS:.0f} s")
                time.sleep(0.2)

    def cancel(self) -> EndpointResponse:
        """Cancel the task: a pending one never runs; a running one's result is dropped."""
        return _response_from(self.client, self.client.cancel_task(self.async_task_id))


class Endpoint:
    """An abstract class that represent any kind of endpoints in Scale Launch"""

    def __init__(self, model_endpoint: ModelEndpoint, client: LaunchClient) -> None:
        self.model_endpoint = model_endpoint
        self.client = client

    def _update_model_endpoint_view(self) -> None:
        self.model_endpoint = self.client._get_model_endpoint_record(self.model_endpoint.name)

    def status(self) -> str | None:
        """Gets the status of the Endpoint."""
        self._update_model_endpoint_view()
        return self.model_endpoint.status

    def wait_until_ready(self, timeout: float = 300.0, poll_interval: float = 0.2,
                         progress: bool | None = None) -> Endpoint:
        """Block until the endpoint is READY (returns it), raising ``EndpointFailed`` with the server's reason
        if it fails to start and ``TimeoutError`` after ``timeout`` seconds. ``progress`` (default: when
        stderr is a terminal) shows its status and elapsed time while it waits."""
        import sys

        from launch.errors import EndpointFailed

        show = sys.stderr.isatty() if progress is None else progress
        start = time.monotonic()
        last = None
        while True:
            record = self.client.connection.request("GET", f"/v1/model-endpoints/{self.model_endpoint.name}")
            self.model_endpoint = ModelEndpoint.from_dict(record)
            status = record.get("status")
            if show and status != last:
                print(f"endpoint {self.model_endpoint.name}: {status} after {time.monotonic() - start:.1f} s",
                      file=sys.stderr, flush=True)
                last = status
            if status == "READY":
                return self
            if status == "UPDATE_FAILED":
                raise EndpointFailed(self.model_endpoint.name, record.get("status_reason"))
            if time.monotonic() - start >= timeout:
                raise TimeoutError(f"endpoint {self.model_endpoint.name!r} is still {status} after {timeout:g} s; "
                                   "see client.read_endpoint_creation_logs() for its workers' logs")
            time.sleep(poll_interval)

    def resource_settings(self) -> dict | None:
        """Gets the resource settings of the Endpoint."""
        self._update_model_endpoint_view()
        return self.model_endpoint.resource_settings

    def worker_settings(self) -> dict | None:
        """Gets the worker settings of the Endpoint."""
        self._update_model_endpoint_view()
        return self.model_endpoint.worker_settings

    def _describe(self, kind: str) -> str:
        e = self.model_endpoint
        return (f"{kind}(name='{e.name}', bundle_name='{e.bundle_name}', status='{e.status}', "
                f"resource_settings='{json.dumps(e.resource_settings)}', "
                f"worker_settings='{json.dumps(e.worker_settings)}', endpoint_type='{e.endpoint_type}', "
                f"metadata='{e.metadata}')")


class SyncEndpoint(Endpoint):
    """A synchronous model endpoint."""

    def __str__(self) -> str:
        return f"SyncEndpoint <endpoint_name:{self.model_endpoint.name}>"

    def __repr__(self) -> str:
        return self._describe("SyncEndpoint")

    def predict(self, request: EndpointRequest) -> EndpointResponse:
        """Runs a synchronous prediction request."""
        raw = self.client._sync_request(self.model_endpoint.name, url=request.url, args=request.args,
                                        return_pickled=bool(request.return_pickled))
        return _response_from(self.client, raw)


class AsyncEndpoint(Endpoint):
    """An asynchronous model endpoint."""

    def __str__(self) -> str:
        return f"AsyncEndpoint <endpoint_name:{self.model_endpoint.name}>"

    def __repr__(self) -> str:
        return self._describe("AsyncEndpoint")

    def predict(self, request: EndpointRequest, idempotency_key: str | None = None) -> EndpointResponseFuture:
        """Runs an asynchronous prediction request; returns an ``EndpointResponseFuture`` whose ``get()``
        blocks on completion. With ``idempotency_key``, sending the same request again (a retry after a
        lost answer) returns the same task instead of queueing another."""
        task_id = self.client._async_request(self.model_endpoint.name, url=request.url, args=request.args,
                                             return_pickled=bool(request.return_pickled),
                                             options=request.task_options(), idempotency_key=idempotency_key)
        return EndpointResponseFuture(self.client, self.model_endpoint.name, task_id)

    def predict_batch(self, requests: list[EndpointRequest]) -> AsyncEndpointBatchResponse:
        """(deprecated) Runs inference on the given requests; returns an ``AsyncEndpointBatchResponse``
        keeping track of them. Request_ids must all be distinct."""
        if len(requests) != len({r.request_id for r in requests}):
            raise ValueError("Request_ids in a batch must be unique")

        def submit(request: EndpointRequest) -> tuple[str, str]:
            task_id = self.client._async_request(self.model_endpoint.name, url=request.url, args=request.args,
                                                 return_pickled=bool(request.return_pickled),
                                                 options=request.task_options())
            return request.request_id, task_id

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as executor:
            request_ids = dict(executor.map(submit, requests))
        return AsyncEndpointBatchResponse(self.client, self.model_endpoint.name, request_ids)


class StreamingEndpoint(Endpoint):
    """A streaming model endpoint: its predict function yields items, which arrive as they are produced."""

    def __str__(self) -> str:
        return f"StreamingEndpoint <endpoint_name:{self.model_endpoint.name}>"

    def __repr__(self) -> str:
        return self._describe("StreamingEndpoint")

    def predict(self, request: EndpointRequest) -> Iterator[Any]:
        """The items of one prediction, each a parsed JSON value, in order, as they come. Raises
        ``StreamError`` if the predict function fails mid-stream (after the items before it). Stopping
        early (closing the iterator) stops the generator on the worker."""
        return self.client._stream_request(self.model_endpoint.name, url=request.url, args=request.args)

    def apredict(self, request: EndpointRequest) -> AsyncIterator[Any]:
        """``predict`` for asyncio: ``async for item in endpoint.apredict(request)``."""
        return self.client._astream_request(self.model_endpoint.name, url=request.url, args=request.args)


class AsyncEndpointBatchResponse:
    """(deprecated) The async requests of one batch to an endpoint: request_id → task id, with a way to poll
    their status. Invariant: ``request_ids`` and ``responses`` have the same keys."""

    def __init__(self, client: LaunchClient, endpoint_name: str, request_ids: dict[str, str]) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.request_ids = dict(request_ids)
        self.responses: dict[str, EndpointResponse | None] = {rid: None for rid in request_ids}
        self.statuses: dict[str, str | None] = {rid: TASK_PENDING_STATE for rid in request_ids}

    def poll_endpoints(self) -> None:
        """Runs one round of polling the endpoint for async task results."""
        pending = [rid for rid, status in self.statuses.items() if status in UNFINISHED_STATES]

        def poll(request_id: str) -> tuple[str, dict[str, Any]]:
            return request_id, self.client._get_async_endpoint_response(
                self.endpoint_name, self.request_ids[request_id]
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as executor:
            for request_id, raw in executor.map(poll, pending):
                response = _response_from(self.client, raw)
                self.statuses[request_id] = response.status
                self.responses[request_id] = response

    def is_done(self, poll: bool = True) -> bool:
        """Checks the client local state to see if all requests are done (polling the server first when
        ``poll`` is True)."""
        if poll:
            self.poll_endpoints()
        return all(status not in UNFINISHED_STATES for status in self.statuses.values())

    def get_responses(self) -> dict[str, EndpointResponse | None]:
        """request_id → ``EndpointResponse`` for every request; raises ``ValueError`` while some are
        still pending."""
        if not self.is_done(poll=False):
            raise ValueError("Not all responses are done")
        return dict(self.responses)

    def batch_status(self) -> dict[str | None, int]:
        """How many requests are in each state."""
        return dict(Counter(self.statuses.values()))
