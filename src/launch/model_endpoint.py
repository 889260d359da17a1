"""Endpoints and their requests, responses and futures (the ``launch.model_endpoint`` API of the seed)."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launch.client import LaunchClient

TASK_PENDING_STATE = "PENDING"
TASK_SUCCESS_STATE = "SUCCESS"
TASK_FAILURE_STATE = "FAILURE"
LONG_POLL_SECONDS = 20.0

__all__ = [
    "AsyncEndpoint",
    "AsyncEndpointBatchResponse",
    "Endpoint",
    "EndpointRequest",
    "EndpointResponse",
    "EndpointResponseFuture",
    "ModelEndpoint",
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
    """The type of the endpoint. Must be ``'async'`` or ``'sync'``."""
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
    batch; one is generated when not given.
    """

    def __init__(self, url: str | None = None, args: dict | None = None, return_pickled: bool | None = True,
                 request_id: str | None = None) -> None:
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


class EndpointResponse:
    """Represents a response received from a Endpoint: ``status`` (``SUCCESS``, ``FAILURE`` or ``PENDING``),
    then exactly one of ``result_url`` (pickled output) or ``result`` (output as a JSON string), or the
    ``traceback`` of a predict function that raised."""

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
        blocks (at most ``timeout`` seconds when given, then raises ``TimeoutError``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            # the server holds the request until the task ends (or the wait is over): no busy polling
            raw = self.client._wait_async_task(self.async_task_id, max(0.0, min(LONG_POLL_SECONDS, remaining)))
            state = raw.get("status", raw.get("state"))
            if state in (TASK_SUCCESS_STATE, TASK_FAILURE_STATE):
                return _response_from(self.client, raw)
            if state != TASK_PENDING_STATE:
                raise ValueError(f"Unrecognized state: {state}")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.async_task_id} did not finish within {timeout} s")


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

    def predict(self, request: EndpointRequest) -> EndpointResponseFuture:
        """Runs an asynchronous prediction request; returns an ``EndpointResponseFuture`` whose ``get()``
        blocks on completion."""
        task_id = self.client._async_request(self.model_endpoint.name, url=request.url, args=request.args,
                                             return_pickled=bool(request.return_pickled))
        return EndpointResponseFuture(self.client, self.model_endpoint.name, task_id)

    def predict_batch(self, requests: list[EndpointRequest]) -> AsyncEndpointBatchResponse:
        """(deprecated) Runs inference on the given requests; returns an ``AsyncEndpointBatchResponse``
        keeping track of them. Request_ids must all be distinct."""
        if len(requests) != len({r.request_id for r in requests}):
            raise ValueError("Request_ids in a batch must be unique")

        def submit(request: EndpointRequest) -> tuple[str, str]:
            task_id = self.client._async_request(self.model_endpoint.name, url=request.url, args=request.args,
                                                 return_pickled=bool(request.return_pickled))
            return request.request_id, task_id

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as executor:
            request_ids = dict(executor.map(submit, requests))
        return AsyncEndpointBatchResponse(self.client, self.model_endpoint.name, request_ids)


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
        pending = [rid for rid, status in self.statuses.items() if status == TASK_PENDING_STATE]

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
        return all(status != TASK_PENDING_STATE for status in self.statuses.values())

    def get_responses(self) -> dict[str, EndpointResponse | None]:
        """request_id → ``EndpointResponse`` for every request; raises ``ValueError`` while some are
        still pending."""
        if not self.is_done(poll=False):
            raise ValueError("Not all responses are done")
        return dict(self.responses)

    def batch_status(self) -> dict[str | None, int]:
        """How many requests are in each state."""
        return dict(Counter(self.statuses.values()))
