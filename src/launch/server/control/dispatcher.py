"""Dispatch of async tasks: take ids from the broker only while a worker has spare capacity, lease the task
in the database, push it to the least busy worker over HTTP, store the outcome, heartbeat the leases.
Every transition goes through ``domain.tasks`` (the lifecycle); this module only reports what happened.

The dispatcher (in the gateway process) holds the lease, not the worker: a worker that dies breaks its
connection and the task is retried at once, and workers need no database or broker credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from launch.net_guard import FetchPolicy
from launch.server.activity import Activity
from launch.server.control.pool import EndpointPool, WorkerRef
from launch.server.domain.results import result_key
from launch.server.domain.task_policy import Cause, TaskState
from launch.server.domain.tasks import Task, Tasks
from launch.server.inputs import prepare
from launch.server.metrics import Metrics
from launch.server.worker_client import WorkerClient, WorkerReply, WorkerUnreachable
from launch.stores.broker import Broker
from launch.stores.objects import ObjectStore

log = logging.getLogger("launch.dispatcher")


class Dispatcher:
    def __init__(self, endpoint_id: str, queue: str, pool: EndpointPool, *, broker: Broker, tasks: Tasks,
                 objects: ObjectStore, client: WorkerClient, task_timeout: float,
                 on_broken_worker: Callable[[], None], fetch_policy: FetchPolicy | None = None,
                 exit_reason: Callable[[str], str | None] = lambda worker_id: None,
                 cancel_stops_worker: bool = False, metrics: Metrics | None = None,
                 activity: Activity | None = None, owner: str = "") -> None:
        self.endpoint_id = endpoint_id
        self.owner = owner
        self.metrics = metrics or Metrics()
        self.activity = activity or Activity()
        self.queue = queue
        self.pool = pool
        self.broker = broker
        self.tasks = tasks
        self.objects = objects
        self.client = client
        self.task_timeout = task_timeout
        self.on_broken_worker = on_broken_worker
        self.fetch_policy = fetch_policy or FetchPolicy()
        self.exit_reason = exit_reason
        self.cancel_stops_worker = cancel_stops_worker
        self.running: dict[str, Task] = {}
        self._worker_of: dict[str, WorkerRef] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._parked: WorkerRef | None = None  # one of its slots is kept for the message the consumer awaits
        self._stopped = False

    def start(self) -> None:
        self._loop = asyncio.create_task(self._consume(), name=f"dispatch-{self.endpoint_id}")
        self._heartbeat = asyncio.create_task(self._beat(), name=f"heartbeat-{self.endpoint_id}")
        self._unsubscribe = self.tasks.subscribe(self._on_change, self.endpoint_id)
        self.pool.direct = self

    def _on_change(self, task: Task) -> None:
        """A running task of ours was cancelled: its result will be dropped; with the operator's consent its
        worker is recycled now (a thread cannot be stopped, a process can)."""
        if task.state is TaskState.CANCELLED and self.cancel_stops_worker:
            worker = self._worker_of.get(task.id)
            if worker is not None and not worker.broken:
                log.warning("task %s was cancelled while running: recycling worker %s", task.id, worker.worker_id)
                worker.broken = True
                self.on_broken_worker()

    async def stop(self) -> None:
        self._stopped = True
        if self.pool.direct is self:
            self.pool.direct = None
        if self._unsubscribe is not None:
            self._unsubscribe()
        for job in (self._loop, self._heartbeat):
            if job is not None:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
        if self._jobs:
            await asyncio.wait(self._jobs, timeout=5)
        for task in list(self.running.values()):  # still running: hand back now, not after the lease expires
            with contextlib.suppress(Exception):
                await self.tasks.release(task, Cause.SERVER_STOPPING, "the server stopped while the task was running")

    async def _consume(self) -> None:
        while True:
            try:
                worker = await self.pool.wait_for(1.0, need_capacity=True)
                if worker is None:
                    continue
                self._parked = worker
                try:
                    message = await self.broker.consume(self.queue, 1.0)
                finally:
                    self._parked = None
                if message is None:
                    continue
                worker = self.pool.pick_with_capacity() or worker
                worker.inflight += 1  # reserve the slot now; the claim commits in the job (claims batch up)
                self._spawn(self._claim_and_run(message, worker))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher for endpoint %s failed; retrying", self.endpoint_id)
                await asyncio.sleep(1.0)

    async def _claim_and_run(self, task_id: str, worker: WorkerRef) -> None:
        try:
            task = await self.tasks.claim(task_id)
        except Exception:
            log.exception("claiming task %s failed; the recovery sweep will retry it", task_id)
            task = None
        if task is None:  # taken or ended elsewhere (a duplicate message)
            worker.inflight -= 1
            await self.pool.notify()
            return
        await self._start(task, worker)

    def reserve(self) -> WorkerRef | None:
        """A slot for a task started at its submission, never the one kept for the consumer's next message."""
        if self._stopped:
            return None
        worker = self.pool.pick_with_capacity(keep=self._parked)
        if worker is not None:
            worker.inflight += 1
        return worker

    def unreserve(self, worker: WorkerRef) -> None:
        worker.inflight -= 1
        self._spawn(self.pool.notify())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def adopt(self, task: Task, worker: WorkerRef) -> None:
        """Run a task that was started at its submission (inserted RUNNING, leased, never queued) on
        ``worker``, whose slot ``reserve`` gave the submitter: the queue was empty and the worker free."""
        self._spawn(self._start(task, worker))

    async def _start(self, task: Task, worker: WorkerRef) -> None:
        self.running[task.id] = task
        self._worker_of[task.id] = worker
        self.metrics.task_started(self.endpoint_id, time.time() - task.created_at)
        await self._run(task, worker)

    async def _run(self, task: Task, worker: WorkerRef) -> None:
        # the task id travels with the request: the worker prefixes the lines the prediction prints with it
        request = await prepare({**task.request, "request_id": task.id}, self.fetch_policy)
        if request.failure is not None:  # nothing to run: the input could not be fetched
            self.metrics.task(self.endpoint_id, "failure")
            await self._settle(self.tasks.finish(task, ok=False, traceback=request.failure), task, worker)
            return
        timeout = task.timeout_seconds or self.task_timeout
        began = time.perf_counter()
        try:
            reply = await self.client.predict(worker.address, request.payload, timeout, request.kind)
        except WorkerUnreachable as exc:
            self.metrics.task(self.endpoint_id, "worker_lost")
            worker.broken = True
            self.on_broken_worker()
            reason = f"worker failed while running the task: {self.exit_reason(worker.worker_id) or exc}"
            # a request that never reached the worker did not run: its attempt is given back
            cause = Cause.WORKER_LOST if exc.sent else Cause.NOT_SENT
            outcome = self.tasks.release(task, cause, reason)
            await self._settle(outcome, task, worker)
            return
        except TimeoutError:
            # the predict function hangs or is too slow: fail the task (no retry), recycle the stuck worker
            self.metrics.task(self.endpoint_id, "timeout")
            worker.broken = True
            self.on_broken_worker()
            outcome = self.tasks.release(task, Cause.TIMED_OUT, f"it ran longer than its limit of {timeout:g} s")
            await self._settle(outcome, task, worker)
            return
        self.metrics.task_ran(self.endpoint_id, time.perf_counter() - began)
        if reply.rejected:  # never ran: give the attempt back
            self.metrics.task(self.endpoint_id, "rejected")
            worker.retiring = True
            self.on_broken_worker()
            outcome = self.tasks.release(task, Cause.NOT_SENT, f"worker refused the task: {reply.detail}")
            await self._settle(outcome, task, worker)
            return
        await self._settle(self._store(task, reply), task, worker)

    async def _store(self, task: Task, reply: WorkerReply) -> bool:
        if reply.pickled:
            self.metrics.task(self.endpoint_id, "success")
            key = result_key(task.owner, f"{task.id}.{task.attempt}")  # one object per attempt: see below
            await self.objects.put(key, reply.body, fresh=True)  # one key per attempt, read after the commit
            stored = await self.tasks.finish(task, ok=True, result_key=key)
            if not stored:  # fenced out (lease lost, task cancelled): this attempt's result is dropped
                await self.objects.delete(key)
            return stored
        ok, result, traceback = reply.json_outcome()
        self.metrics.task(self.endpoint_id, "success" if ok else "failure")
        if not ok:
            self.activity.failed(self.owner, self.endpoint_id, "task", task.id, traceback)
        return await self.tasks.finish(task, ok=ok, result=result, traceback=traceback)

    async def _settle(self, outcome: Awaitable[object], task: Task, worker: WorkerRef) -> None:
        """Record the outcome, then free the worker's slot whatever happened."""
        try:
            await outcome
        except Exception:
            log.exception("could not record the outcome of task %s; its lease will expire and retry", task.id)
        finally:
            worker.inflight -= 1
            self.running.pop(task.id, None)
            self._worker_of.pop(task.id, None)
            await self.pool.notify()

    async def _beat(self) -> None:
        interval = max(0.5, self.tasks.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tasks.extend(list(self.running))
            except Exception:
                log.exception("lease heartbeat failed for endpoint %s", self.endpoint_id)
