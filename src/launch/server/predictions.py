"""The prediction paths. Sync: cached endpoint → least busy worker → one hop, no database I/O. Async:
validated and committed as a task, then dispatched by ``control.dispatcher``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from launch.net_guard import FetchPolicy
from launch.server.control.pool import EndpointPool, Pools, WorkerRef
from launch.server.domain import schemas
from launch.server.domain.endpoint_cache import EndpointCache
from launch.server.domain.endpoint_states import EndpointStatus
from launch.server.domain.endpoints import Endpoint, Endpoints
from launch.server.domain.errors import (
    Conflict,
    InvalidRequest,
    PredictionTimeout,
    TooManyRequests,
    Unavailable,
    WorkerFailed,
)
from launch.server.domain.quotas import Quotas
from launch.server.domain.results import result_key, result_url
from launch.server.domain.tasks import Task, Tasks, TaskState, validate_task_request
from launch.server.inputs import failure_body, prepare
from launch.server.worker_client import WorkerClient, WorkerUnreachable
from launch.stores.objects import ObjectStore

MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ResultLinks:
    public_url: str
    secret: bytes
    ttl: int

    def url(self, key: str) -> str:
        return result_url(self.public_url, self.secret, key, self.ttl)


def parse_body(body: bytes, endpoint: Endpoint | None = None) -> dict[str, Any]:
    """The validated request; its ``args`` also against the endpoint's request schema, if it has one."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    request = validate_task_request(data)
    if endpoint is not None and endpoint.request_schema is not None and "args" in request:
        schemas.validate_args(schemas.validator(endpoint.request_schema), request["args"])
    return request


def _usable(endpoint: Endpoint, kind: str) -> None:
    if endpoint.endpoint_type != kind:
        kind_now = endpoint.endpoint_type
        raise InvalidRequest(f"endpoint {endpoint.name!r} is {kind_now}, not {kind}; send it {kind_now} tasks")
    if not endpoint.usable:  # after a failed rollout the serving generation still answers: usable
        raise Conflict(f"endpoint {endpoint.name!r} failed to start: {endpoint.status_reason or 'unknown'}")
    if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
        raise Conflict(f"endpoint {endpoint.name!r} is being deleted")


class Predictions:
    def __init__(self, *, cache: EndpointCache, endpoints: Endpoints, pools: Pools, client: WorkerClient,
                 tasks: Tasks, objects: ObjectStore, links: ResultLinks, sync_timeout: float,
                 max_queued: int = 100_000, fetch_policy: FetchPolicy | None = None,
                 exit_reason: Callable[[str], str | None] = lambda worker_id: None,
                 quotas: Quotas | None = None) -> None:
        self.cache = cache
        self.endpoints = endpoints
        self.pools = pools
        self.client = client
        self.tasks = tasks
        self.objects = objects
        self.links = links
        self.sync_timeout = sync_timeout
        self.max_queued = max_queued
        self.fetch_policy = fetch_policy or FetchPolicy()
        self.exit_reason = exit_reason  # why a worker died, where placement knows (its memory limit)
        self.quotas = quotas or Quotas()
        # demand for an endpoint with no serving worker: wakes the control loop, wherever it runs
        self.demand: Callable[[str], None] = self.endpoints.wake

    async def sync(self, owner: str, endpoint_name: str, body: bytes) -> bytes:
        """Run one prediction and return the native response body (JSON)."""
        endpoint = await self.cache.get(owner, endpoint_name)
        _usable(endpoint, "sync")
        # validated here for a clear 4xx; without a url the worker reads the client's own bytes the same way
        request = await prepare(parse_body(body, endpoint), self.fetch_policy, raw=body)
        if request.failure is not None:
            return failure_body(request.failure)
        pool = self.pools.get(endpoint.id)
        deadline = time.monotonic() + self.sync_timeout  # one budget for waiting and predicting
        reply = None
        for attempt in range(2):
            worker = pool.pick() or await self._wait_for_worker(pool, owner, endpoint, deadline)
            worker.inflight += 1
            can_retry = attempt == 0 and len(pool.serving) > 1  # another worker can take it
            try:
                reply = await self.client.predict(worker.address, request.payload,
                                                  max(0.001, deadline - time.monotonic()), request.kind)
                if not reply.rejected:
                    break
                worker.retiring = True  # it is stopping (SIGTERM from outside): it ran nothing
                self.endpoints.wake(endpoint.id)  # start its replacement now
                if not can_retry:
                    raise Unavailable(f"the worker serving {endpoint_name!r} refused the request: {reply.detail}")
            except WorkerUnreachable as exc:
                worker.broken = True
                self.endpoints.wake(endpoint.id)  # the reconciler replaces it now
                if exc.sent:  # it may have run: do not run it again behind the caller's back
                    why = self.exit_reason(worker.worker_id) or str(exc)
                    raise WorkerFailed(f"the worker serving {endpoint_name!r} failed during the prediction: {why}"
                                       ) from None
                if not can_retry:
                    raise Unavailable(f"the worker serving {endpoint_name!r} is unreachable: {exc}") from None
            except TimeoutError:
                worker.broken = True  # its thread cannot be stopped, its process can: the reconciler recycles it
                self.endpoints.wake(endpoint.id)
                raise PredictionTimeout(
                    f"prediction on {endpoint_name!r} did not finish within {self.sync_timeout:g} s "
                    "(LAUNCH_SYNC_TIMEOUT_SECONDS); the worker that ran it is being replaced"
                ) from None
            finally:
                worker.inflight -= 1
        assert reply is not None
        if reply.pickled:
            key = result_key(owner, uuid.uuid4().hex)
            await self.objects.put(key, reply.body)
            return orjson.dumps({"status": "SUCCESS", "result_url": self.links.url(key)})
        return reply.body

    async def _wait_for_worker(self, pool: EndpointPool, owner: str, endpoint: Endpoint,
                               deadline: float) -> WorkerRef:
        """Wait for a serving worker (scale from zero, start-up), failing fast if the endpoint fails."""
        pool.waiting += 1
        self.demand(endpoint.id)  # wake the reconciler: demand from zero workers
        worker = None
        try:
            while worker is None and (remaining := deadline - time.monotonic()) > 0:
                worker = await pool.wait_for(min(1.0, remaining))
                if worker is None:
                    self.demand(endpoint.id)  # still waiting (another gateway's control loop counts it)
                    endpoint = await self.cache.get(owner, endpoint.name)
                    _usable(endpoint, "sync")
        finally:
            pool.waiting -= 1
        if worker is None:
            raise Unavailable(
                f"no worker of endpoint {endpoint.name!r} became ready within {self.sync_timeout:.0f} s "
                f"(status {endpoint.status.value})"
            )
        return worker

    async def submit(self, owner: str, endpoint_name: str, body: bytes) -> str:
        endpoint = await self.cache.get(owner, endpoint_name)
        _usable(endpoint, "async")
        request = parse_body(body, endpoint)
        if b"\\u0000" in body and _holds_nul(request):
            raise InvalidRequest("the request holds a NUL character (\\u0000), which async tasks cannot store; "
                                 "send binary data base64-encoded or by url")
        if await self.tasks.broker.depth(endpoint.queue) >= self.max_queued:
            raise TooManyRequests(f"endpoint {endpoint_name!r} has {self.max_queued} tasks waiting; retry later")
        self.quotas.check_queued(self.tasks.unfinished.get(owner))  # no await until submit counts it
        task_id = await self.tasks.submit(owner, endpoint.id, endpoint.queue, request)
        if not self.pools.get(endpoint.id).serving:
            self.demand(endpoint.id)  # wake the reconciler: scale from zero now, not at its next pass
        return task_id

    async def task_view(self, owner: str, task_id: str, wait: float = 0.0) -> dict[str, Any]:
        """The task as the API shows it: status PENDING until it ended, then its result or traceback. With
        ``wait`` > 0, answer as soon as it ends, or after ``wait`` seconds (long-poll)."""
        if wait > 0:
            task = await self.tasks.wait(owner, task_id, min(wait, MAX_WAIT_SECONDS))
        else:
            task = await self.tasks.get(owner, task_id)
        return task_view(task, self.links)


def task_view(task: Task, links: ResultLinks) -> dict[str, Any]:
    status = task.state.value if task.state in (TaskState.SUCCESS, TaskState.FAILURE) else "PENDING"
    view: dict[str, Any] = {"task_id": task.id, "status": status, "attempts": task.attempt}
    if task.state is TaskState.SUCCESS:
        if task.result_key:
            view["result_url"] = links.url(task.result_key)
        else:
            view["result"] = task.result
    elif task.state is TaskState.FAILURE:
        view["traceback"] = task.traceback
    return view


def _holds_nul(value: Any) -> bool:
    """Whether a JSON value holds U+0000 in a key or string (PostgreSQL's JSON cannot store it; refused on every
    engine alike)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False
