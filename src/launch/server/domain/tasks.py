"""Async tasks: committed to the database before the client gets an id, then carried by the broker.

States: PENDING (queued) → RUNNING (leased by a dispatcher: ``attempt`` + ``lease_expires_at``) → SUCCESS |
FAILURE. A lease that expires (its dispatcher died) returns the task to PENDING, or to FAILURE once
``max_attempts`` runs were started. Results are fenced by ``attempt``: a late result from an earlier lease
is ignored, so exactly one result is stored. Execution is at-least-once: predict functions may run twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from launch.server.domain.errors import InvalidRequest, NotFound
from launch.server.domain.quotas import OwnerCounts
from launch.stores.broker import Broker
from launch.stores.database import Database
from launch.stores.schema import tasks


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


TERMINAL = (TaskState.SUCCESS, TaskState.FAILURE)

# The hot statements as plain SQL (portable between SQLite and PostgreSQL): building them from Core
# expressions on every call costs 3-7x more than executing them.
_SUBMIT = sa.text(
    "INSERT INTO tasks (id, owner, endpoint_id, state, request, attempt, max_attempts, created_at) "
    "VALUES (:id, :owner, :endpoint_id, 'PENDING', :request, 0, :max_attempts, :created_at)"
).bindparams(sa.bindparam("request", type_=sa.JSON))
_CLAIM = sa.text(
    "UPDATE tasks SET state = 'RUNNING', attempt = attempt + 1, lease_expires_at = :lease, started_at = :now "
    "WHERE id = :id AND state = 'PENDING' RETURNING *"
).columns(*tasks.c)
_FINISH = sa.text(
    "UPDATE tasks SET state = :state, result = :result, result_key = :result_key, traceback = :traceback, "
    "finished_at = :now, lease_expires_at = NULL WHERE id = :id AND attempt = :attempt AND state = 'RUNNING'"
)
_RELEASE = sa.text(
    "UPDATE tasks SET state = 'PENDING', lease_expires_at = NULL, traceback = :reason, attempt = attempt - :refund "
    "WHERE id = :id AND attempt = :attempt AND state = 'RUNNING'"
)


def validate_task_request(body: Any) -> dict[str, Any]:
    """The normalised prediction request: ``url`` (wins when both are sent) or ``args``, and return_pickled."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    url, args = body.get("url"), body.get("args")
    return_pickled = body.get("return_pickled", True)
    if not isinstance(return_pickled, bool):
        raise InvalidRequest("return_pickled must be true or false")
    options: dict[str, Any] = {"return_pickled": return_pickled}
    protocol = body.get("pickle_protocol")  # the asking client's highest pickle protocol
    if protocol is not None:
        if not isinstance(protocol, int) or isinstance(protocol, bool) or not 2 <= protocol <= 5:
            raise InvalidRequest("pickle_protocol must be an integer from 2 to 5")
        options["pickle_protocol"] = protocol
    if url is not None:
        if not isinstance(url, str) or not url:
            raise InvalidRequest("url must be a non-empty string")
        return {"url": url, **options}
    if args is None:
        raise InvalidRequest("exactly one of 'url' or 'args' must be given")
    if not isinstance(args, dict):
        raise InvalidRequest("args must be a JSON object whose keys are the predict function's parameter names")
    return {"args": args, **options}


@dataclass(frozen=True)
class Task:
    id: str
    owner: str
    endpoint_id: str
    state: TaskState
    request: dict[str, Any]
    attempt: int
    max_attempts: int
    result: str | None
    result_key: str | None
    traceback: str | None
    created_at: float
    finished_at: float | None


def _row_to_task(row: Any) -> Task:
    return Task(
        id=row.id, owner=row.owner, endpoint_id=row.endpoint_id, state=TaskState(row.state),
        request=row.request, attempt=row.attempt, max_attempts=row.max_attempts, result=row.result,
        result_key=row.result_key, traceback=row.traceback, created_at=row.created_at,
        finished_at=row.finished_at,
    )


class TaskCache:
    """Recently seen tasks, so that polling costs no database read.

    Finished tasks never change, so they are always cached. Unfinished ones are cached only when this
    process is ``authoritative`` (it alone dispatches its tasks: the embedded broker); with a shared broker
    another gateway may finish them, so their polls read the database.
    """

    MAX_TASKS = 100_000
    MAX_RESULT_BYTES = 64 * 1024

    def __init__(self, authoritative: bool) -> None:
        self.authoritative = authoritative
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def put(self, task: Task) -> None:
        if task.state not in TERMINAL and not self.authoritative:
            return
        if len(task.result or "") + len(task.traceback or "") > self.MAX_RESULT_BYTES:
            self._tasks.pop(task.id, None)
            return
        self._tasks[task.id] = task
        self._tasks.move_to_end(task.id)
        if len(self._tasks) > self.MAX_TASKS:
            self._tasks.popitem(last=False)

    def drop(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def clear(self) -> None:
        self._tasks.clear()


class Tasks:
    def __init__(self, db: Database, broker: Broker, max_attempts: int, lease_seconds: float,
                 cache: TaskCache | None = None) -> None:
        self.db = db
        self.broker = broker
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.cache = cache or TaskCache(authoritative=False)
        self.unfinished = OwnerCounts()  # per owner, for the queued-tasks quota
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.announce: Callable[[str], None] = lambda task_id: None  # tells other gateways a task ended ("*": many)

    def ended_elsewhere(self, task_id: str) -> None:
        """Another gateway ended ``task_id`` (``*``: several): forget it and wake its long-polls."""
        if task_id == "*":
            self.cache.clear()
            self._wake()
        else:
            self.cache.drop(task_id)
            self._wake(task_id)

    def _wake(self, task_id: str | None = None) -> None:
        """Wake the long-polls of one task (or of all tasks)."""
        ids = list(self._waiters) if task_id is None else [task_id]
        for waited in ids:
            for future in self._waiters.pop(waited, []):
                if not future.done():
                    future.set_result(None)

    async def wait(self, owner: str, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or as it is after ``timeout`` seconds (long-poll: one request per
        task instead of many). Without first-hand knowledge of the task's end (a shared broker), re-read it
        every second."""
        task = await self.get(owner, task_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        step = timeout if self.cache.authoritative else 1.0
        while task.state not in TERMINAL and (remaining := deadline - loop.time()) > 0:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(task_id, []).append(future)
            timer = loop.call_later(min(step, remaining), _settle_future, future)
            try:
                await future
            finally:
                timer.cancel()
                waiting = self._waiters.get(task_id)
                if waiting and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiters[task_id]
            task = await self.get(owner, task_id)
        return task

    async def submit(self, owner: str, endpoint_id: str, queue: str, request: dict[str, Any]) -> str:
        """Durably record a task, then publish it; the id is returned only after the commit."""
        task_id = str(uuid.uuid4())
        now = time.time()
        params = {"id": task_id, "owner": owner, "endpoint_id": endpoint_id, "request": request,
                  "max_attempts": self.max_attempts, "created_at": now}
        self.unfinished.add(owner)  # before the first await: a quota check just before this call holds
        try:
            await self.db.write(lambda conn: conn.execute(_SUBMIT, params))
        except BaseException:
            self.unfinished.remove(owner)
            raise
        self.cache.put(Task(id=task_id, owner=owner, endpoint_id=endpoint_id, state=TaskState.PENDING,
                            request=request, attempt=0, max_attempts=self.max_attempts, result=None,
                            result_key=None, traceback=None, created_at=now, finished_at=None))
        await self.broker.publish(queue, task_id)
        return task_id

    async def get(self, owner: str, task_id: str) -> Task:
        cached = self.cache.get(task_id)
        if cached is not None and cached.owner == owner:
            return cached
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(tasks).where(tasks.c.id == task_id, tasks.c.owner == owner)
            )).first()
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return _row_to_task(row)

    async def claim(self, task_id: str) -> Task | None:
        """Lease a PENDING task for one attempt (compare-and-set); None if someone else has it or it ended."""
        now = time.time()
        params = {"id": task_id, "now": now, "lease": now + self.lease_seconds}
        row = await self.db.write(lambda conn: conn.execute(_CLAIM, params).first())
        if row is None:
            self.cache.drop(task_id)  # someone else's (or finished): the cache does not know it
            return None
        task = _row_to_task(row)
        self.cache.put(task)
        return task

    async def extend(self, task_ids: list[str]) -> None:
        """Heartbeat: push the leases of running tasks forward."""
        if not task_ids:
            return
        statement = (
            tasks.update()
            .where(tasks.c.id.in_(task_ids), tasks.c.state == TaskState.RUNNING.value)
            .values(lease_expires_at=time.time() + self.lease_seconds)
        )
        await self.db.write(lambda conn: conn.execute(statement))

    async def finish(self, task: Task, *, ok: bool, result: str | None = None, result_key: str | None = None,
                     traceback: str | None = None) -> bool:
        """Store the outcome of ``task``'s current attempt; False if that lease was lost (fenced out)."""
        now = time.time()
        state = TaskState.SUCCESS if ok else TaskState.FAILURE
        params = {"id": task.id, "attempt": task.attempt, "result": result, "result_key": result_key,
                  "traceback": traceback, "now": now, "state": state.value}
        stored = bool(await self.db.write(lambda conn: conn.execute(_FINISH, params).rowcount))
        if stored:
            self.unfinished.remove(task.owner)
            self.cache.put(replace(task, state=state, result=result, result_key=result_key, traceback=traceback,
                                   finished_at=now))
        else:
            self.cache.drop(task.id)
        self._wake(task.id)
        if stored:
            self.announce(task.id)
        return stored

    async def release(self, task: Task, reason: str, queue: str, refund: bool = False) -> TaskState:
        """Give back a lease after an infrastructure failure: retry, or fail once attempts are spent.
        ``refund``: the task never started (the worker refused it), so the attempt does not count."""
        if task.attempt >= task.max_attempts and not refund:
            message = f"task failed after {task.attempt} attempts; last error: {reason}"
            await self.finish(task, ok=False, traceback=message)
            return TaskState.FAILURE
        params = {"id": task.id, "attempt": task.attempt, "reason": reason, "refund": 1 if refund else 0}
        if await self.db.write(lambda conn: conn.execute(_RELEASE, params).rowcount):
            self.cache.put(replace(task, state=TaskState.PENDING, traceback=reason,
                                   attempt=task.attempt - (1 if refund else 0)))
            await self.broker.publish(queue, task.id)
        return TaskState.PENDING

    async def reap_expired(self, queue_of: dict[str, str]) -> int:
        """Expired leases (their dispatcher died or hung) go back to PENDING and are published again, or to
        FAILURE once ``max_attempts`` runs were started. Returns how many were requeued."""
        now = time.time()

        def reap(conn: sa.Connection) -> tuple[list[Any], list[Any]]:
            failed = conn.execute(
                tasks.update()
                .where(tasks.c.state == TaskState.RUNNING.value, tasks.c.lease_expires_at < now,
                       tasks.c.attempt >= tasks.c.max_attempts)
                .values(state=TaskState.FAILURE.value, finished_at=now, lease_expires_at=None,
                        traceback="task failed: its worker stopped responding on its last allowed attempt")
                .returning(tasks.c.id, tasks.c.owner)
            ).all()
            return list(failed), list(conn.execute(
                tasks.update()
                .where(tasks.c.state == TaskState.RUNNING.value, tasks.c.lease_expires_at < now)
                .values(state=TaskState.PENDING.value, lease_expires_at=None)
                .returning(tasks.c.id, tasks.c.endpoint_id)
            ).all())

        failed, requeued = await self.db.write(reap)
        for row in (*failed, *requeued):  # their leases expired behind the cache's back
            self.cache.drop(row.id)
        for row in failed:
            self.unfinished.remove(row.owner)
            self._wake(row.id)
            self.announce(row.id)
        return await self._publish(requeued, queue_of)

    async def recover(self, queue_of: dict[str, str], rebuild: bool = False) -> int:
        """At start-up: reap expired leases and publish every PENDING task again (the embedded broker
        forgot them; duplicates elsewhere are dropped by ``claim``). ``rebuild``: a shared broker outlived
        the last control loop; its queues are emptied first, then refilled from the database (a task
        submitted meanwhile is committed before it is published, so it is either read here or published
        after the drop)."""
        if rebuild:
            for queue in queue_of.values():
                await self.broker.drop(queue)
        await self.reap_expired(queue_of)
        async with self.db.connect() as conn:
            unfinished = (await conn.execute(
                sa.select(tasks.c.owner, sa.func.count()).where(
                    tasks.c.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value])).group_by(tasks.c.owner)
            )).all()
            self.unfinished.reset({row[0]: row[1] for row in unfinished})
            rows = (await conn.execute(
                sa.select(tasks.c.id, tasks.c.endpoint_id).where(tasks.c.state == TaskState.PENDING.value)
                .order_by(tasks.c.created_at)
            )).all()
        return await self._publish(rows, queue_of)

    async def _publish(self, rows: Any, queue_of: dict[str, str]) -> int:
        count = 0
        for row in rows:
            if row.endpoint_id in queue_of:
                await self.broker.publish(queue_of[row.endpoint_id], row.id)
                count += 1
        return count

    async def fail_endpoint_tasks(self, endpoint_id: str, reason: str, pending_only: bool = False) -> None:
        """Unfinished tasks of a deleted (or failed) endpoint end as FAILURE with a reason, never silently
        lost; ``pending_only`` leaves running ones to finish."""
        states = [TaskState.PENDING.value] if pending_only else [TaskState.PENDING.value, TaskState.RUNNING.value]
        statement = (
            tasks.update()
            .where(tasks.c.endpoint_id == endpoint_id, tasks.c.state.in_(states))
            .values(state=TaskState.FAILURE.value, traceback=reason, finished_at=time.time())
            .returning(tasks.c.owner)
        )
        for row in await self.db.write(lambda conn: conn.execute(statement).all()):
            self.unfinished.remove(row.owner)
        self.cache.clear()  # many tasks changed at once (rare): forget them all
        self._wake()
        self.announce("*")


def _settle_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
