"""The prediction paths. Sync: cached endpoint → least busy worker → one hop, no database I/O. Async:
validated and committed as a task, then dispatched by ``control.dispatcher``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from launch.net_guard import FetchPolicy
from launch.server.control.pool import DirectStart, EndpointPool, Pools, WorkerRef
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
from launch.server.domain.results import result_url, sync_results_prefix
from launch.server.domain.task_options import TaskOptions, endpoint_defaults, task_options
from launch.server.domain.task_policy import Cause, TaskState, internal_state
from launch.server.domain.task_view import task_summary, task_view
from launch.server.domain.tasks import Tasks, validate_task_request
from launch.server.inputs import failure_body, prepare, with_request_id
from launch.server.sealing import SealError
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


class RequestTrace:
    """One request as the metrics and the access log see it: its id (sent to the worker with the request, so
    the worker's log lines carry it) and, once resolved, its owner and endpoint."""

    __slots__ = ("endpoint_id", "endpoint_name", "owner", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.owner = ""
        self.endpoint_id = ""
        self.endpoint_name = ""

    def saw(self, endpoint: Endpoint) -> None:
        self.owner, self.endpoint_id, self.endpoint_name = endpoint.owner, endpoint.id, endpoint.name


def parse_body(body: bytes, endpoint: Endpoint | None = None) -> dict[str, Any]:
    """The validated request; its ``args`` also against the endpoint's request schema, if it has one."""
    return checked_request(_json(body), endpoint)


def checked_request(data: Any, endpoint: Endpoint | None) -> dict[str, Any]:
    request = validate_task_request(data)
    if endpoint is not None and endpoint.request_schema is not None and "args" in request:
        schemas.validate_args(schemas.validator(endpoint.request_schema), request["args"])
    return request


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


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
                 quotas: Quotas | None = None, callback_policy: FetchPolicy | None = None) -> None:
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
        self.callback_policy = callback_policy or FetchPolicy()
        self._defaults: dict[str, tuple[Endpoint, TaskOptions]] = {}
        self.open_extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda extra: extra  # sealing.Sealer
        # demand for an endpoint with no serving worker: wakes the control loop, wherever it runs
        self.demand: Callable[[str], None] = self.endpoints.wake

    async def sync(self, owner: str, endpoint_name: str, body: bytes, trace: RequestTrace | None = None) -> bytes:
        """Run one prediction and return the native response body (JSON)."""
        endpoint = await self.cache.get(owner, endpoint_name)
        if trace is not None:
            trace.saw(endpoint)
        _usable(endpoint, "sync")
        # validated here for a clear 4xx; without a url the worker reads the client's own bytes the same way
        fields = parse_body(body, endpoint)
        if trace is not None:  # the worker's log lines for this request carry its id
            fields["request_id"] = trace.request_id
            body = with_request_id(body, trace.request_id)
        request = await prepare(fields, self.fetch_policy, raw=body)
        if request.failure is not None:
            return failure_body(request.failure)
        pool = self.pools.get(endpoint.id)
        deadline = time.monotonic() + self.sync_timeout  # one budget for waiting and predicting
        reply = None
        for attempt in range(2):
            worker = pool.pick() or await self._wait_for_worker(pool, owner, endpoint, deadline)
            worker.inflight += 1
            try:
                reply = await self.client.predict(worker.address, request.payload,
                                                  max(0.001, deadline - time.monotonic()), request.kind)
                if not reply.rejected:
                    break
                worker.retiring = True  # it is stopping (SIGTERM from outside): it ran nothing
                self.endpoints.wake(endpoint.id)  # start its replacement now
                if not _can_retry(attempt, pool):
                    raise Unavailable(f"the worker serving {endpoint_name!r} refused the request: {reply.detail}")
            except WorkerUnreachable as exc:
                worker.broken = True
                self.endpoints.wake(endpoint.id)  # the reconciler replaces it now
                if exc.sent:  # it may have run: do not run it again behind the caller's back
                    why = self.exit_reason(worker.worker_id) or str(exc)
                    raise WorkerFailed(f"the worker serving {endpoint_name!r} failed during the prediction: {why}"
                                       ) from None
                if not _can_retry(attempt, pool):
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
            key = await self.objects.put_record(sync_results_prefix(time.time()), reply.body)
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
                    endpoint = await self.cache.get(owner, endpoint.id)
                    _usable(endpoint, "sync")
        finally:
            pool.waiting -= 1
        if worker is None:
            raise Unavailable(
                f"no worker of endpoint {endpoint.name!r} became ready within {self.sync_timeout:.0f} s "
                f"(status {endpoint.status.value})"
            )
        return worker

    def _endpoint_defaults(self, endpoint: Endpoint) -> TaskOptions:
        cached = self._defaults.get(endpoint.id)
        if cached is not None and cached[0] is endpoint:
            return cached[1]
        try:
            extra = self.open_extra(endpoint.settings.extra)
        except SealError:
            raise Conflict(f"endpoint {endpoint.name!r} has a default_callback_auth sealed under another server "
                           "secret (LAUNCH_SECRET changed): set it again") from None
        defaults = endpoint_defaults(extra, self.callback_policy)
        self._defaults[endpoint.id] = (endpoint, defaults)
        return defaults

    async def submit(self, owner: str, endpoint_name: str, body: bytes, idempotency_key: str | None = None,
                     trace: RequestTrace | None = None) -> str:
        endpoint = await self.cache.get(owner, endpoint_name)
        if trace is not None:
            trace.saw(endpoint)
        _usable(endpoint, "async")
        data = _json(body)
        request = checked_request(data, endpoint)
        if b"\\u0000" in body and _holds_nul(request):
            raise InvalidRequest("the request holds a NUL character (\\u0000), which async tasks cannot store; "
                                 "send binary data base64-encoded or by url")
        options = task_options(data, self._endpoint_defaults(endpoint), self.callback_policy, idempotency_key)
        depth = await self.tasks.broker.depth(endpoint.queue)
        pool = self.pools.get(endpoint.id)
        if depth >= self.max_queued:
            retry_after = 1 if pool.serving else 5
            raise TooManyRequests(f"endpoint {endpoint_name!r} has {self.max_queued} tasks waiting; retry later",
                                  retry_after)
        self.quotas.check_queued(self.tasks.unfinished.get(owner))  # no await until submit counts it
        # nothing waits ahead of it and a worker of this process has a free slot: start it in the insert
        direct = pool.direct if depth == 0 else None
        worker = direct.reserve() if direct is not None else None
        if direct is None or worker is None:
            task_id = await self.tasks.submit(owner, endpoint.id, endpoint.queue, request, options)
            if not pool.serving:
                self.demand(endpoint.id)  # wake the reconciler: scale from zero now, not at its next pass
            return task_id
        return await self._submit_started(direct, worker, owner, endpoint, request, options)

    async def _submit_started(self, direct: DirectStart, worker: WorkerRef, owner: str, endpoint: Endpoint,
                              request: dict[str, Any], options: TaskOptions) -> str:
        """Direct start: the task is inserted RUNNING on ``worker`` (its slot reserved before the insert) and
        handed to the endpoint's dispatcher, without a trip through the queue and a claim."""
        try:
            task_id, task = await self.tasks.submit_task(owner, endpoint.id, endpoint.queue, request, options,
                                                         start=True)
        except BaseException:
            direct.unreserve(worker)
            raise
        if task is None:  # an idempotent repeat: nothing new to run
            direct.unreserve(worker)
        elif self.pools.get(endpoint.id).direct is direct:
            direct.adopt(task, worker)
        else:  # the dispatcher stopped meanwhile: back to the queue, the attempt given back
            direct.unreserve(worker)
            await self.tasks.release(task, Cause.NOT_SENT, "the endpoint's dispatcher stopped before the task ran")
        return task_id

    async def task_view(self, owner: str, task_id: str, wait: float = 0.0,
                        trace: RequestTrace | None = None) -> dict[str, Any]:
        """The task as the API shows it: status PENDING until it ended, then its result or traceback. With
        ``wait`` > 0, answer as soon as it ends, or after ``wait`` seconds (long-poll)."""
        if wait > 0:
            task = await self.tasks.wait(owner, task_id, min(wait, MAX_WAIT_SECONDS))
        else:
            task = await self.tasks.get(owner, task_id)
        if trace is not None:
            trace.endpoint_id = task.endpoint_id
        position = await self.tasks.position(task) if task.state is TaskState.PENDING else None
        return task_view(task, self.links.url, position)

    async def cancel(self, owner: str, task_id: str) -> dict[str, Any]:
        """Cancel a task: a pending one never runs; a running one's result is dropped (and its worker
        recycled when the operator allows it). Cancelling an ended task changes nothing."""
        task, before = await self.tasks.cancel(owner, task_id)
        view = task_view(task, self.links.url)
        view["cancelled"] = task.state is TaskState.CANCELLED and before in (TaskState.PENDING, TaskState.RUNNING)
        return view

    async def list_tasks(self, owner: str, endpoint_name: str, states: list[str] | None = None,
                         since: float | None = None, limit: int = 100) -> dict[str, Any]:
        endpoint = await self.cache.get(owner, endpoint_name)
        try:
            wanted = [internal_state(s.upper()) for s in states or []]
        except ValueError:
            raise InvalidRequest(f"state must be among PENDING, STARTED, SUCCESS, FAILURE, CANCELLED, EXPIRED; "
                                 f"got {states}") from None
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000")
        tasks = await self.tasks.list_for(owner, endpoint.id, wanted, since, limit)
        return {"tasks": [task_summary(t) for t in tasks]}

def _can_retry(attempt: int, pool: EndpointPool) -> bool:
    """Whether a request the first worker did not run may go to another (asked only when it failed)."""
    return attempt == 0 and len(pool.serving) > 1


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
