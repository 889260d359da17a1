"""The task lifecycle: every transition of an async task, in one place.

A task is committed to the database before the client gets its id, then carried by the broker (ids only).
Transitions (the rules are pure functions in ``task_policy``):

- ``submit``: PENDING (idempotent by ``Idempotency-Key``), published with its priority and owner.
- ``submit(start=True)``: straight to RUNNING (attempt 1, leased) in the same insert, when the endpoint's queue
  is empty and a worker of this process has a free slot: no broker hop and no claim write (direct start).
- ``claim``: PENDING → RUNNING, leased to this dispatcher for one attempt (``attempt`` + ``lease_expires_at``);
  never a task past its queue TTL.
- ``finish``: RUNNING → SUCCESS | FAILURE, fenced by ``attempt``: a late result of an earlier lease (or of
  a cancelled task) is ignored, so exactly one outcome is stored.
- ``release``: an attempt ended without an outcome (worker lost, time-out, shutdown): ``retry_decision``
  says PENDING again or FAILURE.
- ``reap_expired``: leases whose dispatcher died go through the same decision.
- ``expire``: PENDING past its queue TTL → EXPIRED (never run).
- ``cancel``: PENDING or RUNNING → CANCELLED (a running attempt's result is dropped).
- ``sweep_retention``: finished tasks older than the retention period are deleted with their result objects,
  leaving a tombstone so a poll says EXPIRED instead of "unknown".

Every ending that has a callback sets ``callback_state = PENDING`` in the same statement that stores the
outcome: the task row is the callback outbox, so a crash between the result and its delivery loses nothing.
Listeners (``subscribe``) hear every transition this process makes (long-polls, event streams).
Execution is at-least-once: predict functions may run twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import operator
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import orjson
import sqlalchemy as sa

from launch.server.domain.endpoints import queue_name
from launch.server.domain.errors import Conflict, InvalidRequest, NotFound
from launch.server.domain.quotas import OwnerCounts
from launch.server.domain.task_options import TaskOptions
from launch.server.domain.task_policy import TERMINAL, Cause, TaskState, retry_decision
from launch.stores.broker import Broker
from launch.stores.database import Database, DriverStatement, json_param
from launch.stores.objects import ObjectStore
from launch.stores.schema import task_tombstones, tasks

__all__ = ["TERMINAL", "Task", "TaskCache", "TaskState", "Tasks", "validate_task_request"]

# The hot statements as plain SQL (portable between SQLite and PostgreSQL) run on the driver's cursor:
# building them from Core expressions on every call costs 3-7x more than executing them, and SQLAlchemy's
# per-call processing about as much again as SQLite's own work.
_TASK_JSON = ("request", "callback")  # the JSON columns of a task (as text in the database and the cache)


def _insert_task(state: str, attempt: int, **more: str) -> DriverStatement:
    """The insert of a new task in ``state`` at ``attempt``; ``more``: further columns and their values."""
    columns = ["id", "owner", "endpoint_id", "state", "request", "attempt", "max_attempts", "created_at", "priority",
               "expires_at", "timeout_seconds", "idempotency_key", "request_digest", "callback", "callback_attempts",
               *more]
    values = [":id", ":owner", ":endpoint_id", f"'{state}'", ":request", str(attempt), ":max_attempts", ":created_at",
              ":priority", ":expires_at", ":timeout_seconds", ":idempotency_key", ":request_digest", ":callback", "0",
              *more.values()]
    return DriverStatement(f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join(values)})")


_SUBMIT = _insert_task("PENDING", 0)
# the same task, already claimed for its first attempt (direct start)
_SUBMIT_STARTED = _insert_task("RUNNING", 1, lease_expires_at=":lease", started_at=":created_at")
_CLAIM = DriverStatement(
    "UPDATE tasks SET state = 'RUNNING', attempt = attempt + 1, lease_expires_at = :lease, started_at = :now "
    "WHERE id = :id AND state = 'PENDING' AND (expires_at IS NULL OR expires_at > :now) RETURNING *",
    _TASK_JSON,
)
_CLAIM_KNOWN = DriverStatement(  # the same, for a task this process knows as it is in the database
    "UPDATE tasks SET state = 'RUNNING', attempt = attempt + 1, lease_expires_at = :lease, started_at = :now "
    "WHERE id = :id AND state = 'PENDING' AND attempt = :attempt AND (expires_at IS NULL OR expires_at > :now)"
)
# an ending arms the callback outbox in the same statement
_ARM_CALLBACK = ("callback_state = CASE WHEN callback IS NULL THEN NULL ELSE 'PENDING' END, "
                 "callback_next_at = CASE WHEN callback IS NULL THEN NULL ELSE :now END")
_FINISH = DriverStatement(
    "UPDATE tasks SET state = :state, result = :result, result_key = :result_key, traceback = :traceback, "
    f"finished_at = :now, lease_expires_at = NULL, {_ARM_CALLBACK} "
    "WHERE id = :id AND attempt = :attempt AND state = 'RUNNING'"
)
_RELEASE = DriverStatement(
    "UPDATE tasks SET state = 'PENDING', lease_expires_at = NULL, traceback = :reason, attempt = :new_attempt "
    "WHERE id = :id AND attempt = :attempt AND state = 'RUNNING'"
)
_CANCEL = DriverStatement(
    "UPDATE tasks SET state = 'CANCELLED', traceback = :reason, finished_at = :now, lease_expires_at = NULL, "
    f"{_ARM_CALLBACK} WHERE id = :id AND state IN ('PENDING', 'RUNNING') RETURNING *",
    _TASK_JSON,
)
_CALLBACK_DONE = DriverStatement(
    "UPDATE tasks SET callback_state = :state, callback_attempts = callback_attempts + 1, "
    "callback_error = :error, callback_next_at = :next_at WHERE id = :id"
)
_EXPIRE = DriverStatement(
    "UPDATE tasks SET state = 'EXPIRED', finished_at = :now, "
    "traceback = 'task expired: no worker took it within its queue time-to-live', "
    f"{_ARM_CALLBACK} WHERE state = 'PENDING' AND expires_at <= :now RETURNING *",
    _TASK_JSON,
)


class _RandomHex:
    """Random hex digits from the OS, read 4 KiB at a time (one system call per 256 task ids instead of one
    per id; each ``os.urandom`` also releases the GIL, a hand-over to the database writer thread)."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two threads never get the same digits
        self.reset()

    def reset(self) -> None:
        """Forget the digits drawn so far (a forked child must not repeat its parent's)."""
        self._hex = ""
        self._at = 0

    def take(self, digits: int) -> str:
        with self._lock:
            if self._at + digits > len(self._hex):
                self._hex, self._at = os.urandom(self.CHUNK).hex(), 0
            start = self._at
            self._at = start + digits
            return self._hex[start:self._at]


_RANDOM_HEX = _RandomHex()
os.register_at_fork(after_in_child=_RANDOM_HEX.reset)


def new_task_id() -> str:
    """A time-ordered random UUID (version 7: 48 bits of Unix milliseconds, then 74 random bits) as text.

    Ids that grow with time are appended to the primary-key index instead of landing on a random page of it:
    with 50,000 tasks an insert cost 40-70 µs with random (version 4) ids and 10-13 µs with these. The random
    bits keep ids unguessable (and a task is only ever shown to its owner)."""
    t = f"{time.time_ns() // 1_000_000:012x}"
    h = _RANDOM_HEX.take(19)
    return f"{t[:8]}-{t[8:]}-7{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


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
    started_at: float | None = None
    priority: int = 0
    expires_at: float | None = None
    timeout_seconds: float | None = None
    callback: dict[str, Any] | None = None  # {"url", "auth"}: auth holds credentials, never shown
    callback_state: str | None = None  # PENDING (in the outbox), DELIVERED, FAILED
    callback_attempts: int = 0
    callback_error: str | None = None
    deleted: bool = False  # a tombstone: the task existed and was deleted after the retention period

    @property
    def queue(self) -> str:
        return queue_name(self.endpoint_id)


def _row_to_task(row: Any) -> Task:
    return Task(
        id=row.id, owner=row.owner, endpoint_id=row.endpoint_id, state=TaskState(row.state),
        request=row.request, attempt=row.attempt, max_attempts=row.max_attempts, result=row.result,
        result_key=row.result_key, traceback=row.traceback, created_at=row.created_at,
        finished_at=row.finished_at, started_at=row.started_at, priority=row.priority, expires_at=row.expires_at,
        timeout_seconds=row.timeout_seconds, callback=row.callback, callback_state=row.callback_state,
        callback_attempts=row.callback_attempts, callback_error=row.callback_error,
    )


def request_digest(endpoint_id: str, request: dict[str, Any], options: TaskOptions) -> str:
    """What "the same body" means for an idempotent resubmission: endpoint, request and options."""
    callback = options.callback.to_dict() if options.callback else None
    body = {"endpoint": endpoint_id, "request": request, "priority": options.priority,
            "queue_ttl": options.queue_ttl, "callback": callback}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


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
        # each task as a tuple of plain values (its JSON fields as text): the garbage collector stops
        # tracking such tuples, so 100,000 cached tasks add nothing to a full collection (as objects they
        # made each one a 115 ms pause, the tail latency of every request)
        self._tasks: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.drops = 0  # drops and clears so far: a read that saw none may cache what it read

    def get(self, task_id: str) -> Task | None:
        packed = self._tasks.get(task_id)
        return None if packed is None else _unpack(packed)

    def put(self, task: Task) -> None:
        if task.state not in TERMINAL and not self.authoritative:
            return
        if len(task.result or "") + len(task.traceback or "") > self.MAX_RESULT_BYTES:
            self._tasks.pop(task.id, None)
            return
        self._tasks[task.id] = _pack(task)
        self._tasks.move_to_end(task.id)
        if len(self._tasks) > self.MAX_TASKS:
            self._tasks.popitem(last=False)

    def update(self, task_id: str, **plain: str | int | float | None) -> None:
        """Change plain (not JSON, not state) fields of a cached task in place; nothing if it is not cached."""
        packed = self._tasks.get(task_id)
        if packed is None:
            self.drops += 1  # a read of it under way must not cache what it read before this change
        else:
            values = list(packed)
            for name, value in plain.items():
                values[_FIELD_AT[name]] = value
            self._tasks[task_id] = tuple(values)

    def drop(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        self.drops += 1

    def clear(self) -> None:
        self._tasks.clear()
        self.drops += 1

    def put_read(self, task: Task, drops_before: int) -> None:
        """Cache a finished task read from the database, unless a drop (a deletion, a change elsewhere) came
        while it was read: the row may be older than that drop."""
        if task.state in TERMINAL and self.drops == drops_before:
            self.put(task)


_TASK_FIELDS = tuple(f.name for f in fields(Task))
_task_values = operator.attrgetter(*_TASK_FIELDS)
_STATE_AT = _TASK_FIELDS.index("state")
_FIELD_AT = {name: at for at, name in enumerate(_TASK_FIELDS)}
_JSON_AT = tuple(_TASK_FIELDS.index(name) for name in _TASK_JSON)


def _pack(task: Task) -> tuple[Any, ...]:
    values = list(_task_values(task))
    values[_STATE_AT] = task.state.value
    for at in _JSON_AT:
        if values[at] is not None:
            values[at] = json_param(values[at])
    return tuple(values)


def _unpack(packed: tuple[Any, ...]) -> Task:
    values = dict(zip(_TASK_FIELDS, packed, strict=True))
    values["state"] = TaskState(values["state"])
    for name in _TASK_JSON:
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    task = object.__new__(Task)  # the fields as they were packed: a frozen dataclass's __init__ costs 5x this
    task.__dict__.update(values)
    return task


def _evolve(task: Task, **changes: Any) -> Task:
    """``dataclasses.replace`` without the frozen dataclass's ``__init__`` (5x the cost of this, on every claim
    and ending): the task's fields as they are, the changed ones replaced."""
    assert changes.keys() <= _FIELD_AT.keys(), f"not task fields: {set(changes) - _FIELD_AT.keys()}"
    evolved = object.__new__(Task)
    evolved.__dict__.update(task.__dict__, **changes)
    return evolved


Listener = Callable[[Task], None]


class Tasks:
    """The lifecycle owner. ``retention`` (seconds) bounds how long finished tasks and results are kept."""

    RETENTION_BATCH = 500

    def __init__(self, db: Database, broker: Broker, max_attempts: int, lease_seconds: float,
                 cache: TaskCache | None = None, *, retention: float = 7 * 86400,
                 objects: ObjectStore | None = None) -> None:
        self.db = db
        self.broker = broker
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.retention = retention
        self.objects = objects
        self.cache = cache or TaskCache(authoritative=False)
        self.listeners: list[Listener] = []
        self._endpoint_listeners: dict[str, list[Listener]] = {}
        self.unfinished = OwnerCounts()  # per owner, for the queued-tasks quota
        self._callback_batch: list[dict[str, Any]] | None = None
        self._callback_written: Any = None
        self._waiters: dict[str, list[asyncio.Future[Task | None]]] = {}
        self.announce: Callable[[str], None] = lambda task_id: None  # tells other gateways a task ended ("*": many)
        # the callback as stored: its credentials sealed (``sealing.Sealer.seal_callback``)
        self.seal_callback: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda callback: callback

    def ended_elsewhere(self, task_id: str) -> None:
        """Another gateway ended ``task_id`` (``*``: several): forget it and wake its long-polls."""
        if task_id == "*":
            self.cache.clear()
            self._wake()
        else:
            self.cache.drop(task_id)
            self._wake(task_id)

    # -- notifications -----------------------------------------------------------------------------------
    def subscribe(self, listener: Listener, endpoint_id: str | None = None) -> Callable[[], None]:
        """Call ``listener(task)`` after every transition this process commits (of one endpoint's tasks, if
        given: a transition costs the same with 1,000 endpoints' dispatchers listening); returns the
        unsubscribe."""
        listeners = self.listeners if endpoint_id is None else self._endpoint_listeners.setdefault(endpoint_id, [])

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
            if endpoint_id is not None and not listeners:
                self._endpoint_listeners.pop(endpoint_id, None)

        listeners.append(listener)
        return unsubscribe

    def _changed(self, task: Task, cached: bool = True) -> None:
        """Called once per committed transition: caches, quota counts, long-polls, listeners."""
        if cached:
            self.cache.put(task)
        else:
            self.cache.drop(task.id)
        if task.state in TERMINAL:
            self.unfinished.remove(task.owner)
            self.announce(task.id)  # other gateways' caches and long-polls (scale-out)
        self._wake(task.id, task)  # long-polls re-check; watchers (task events) get this very state
        for listener in self.listeners:
            listener(task)
        for listener in self._endpoint_listeners.get(task.endpoint_id, ()):
            listener(task)

    def watch(self, task_id: str) -> asyncio.Future[Task | None]:
        """A future set at the task's next state change in this process (claimed, released, finished): watch
        before reading the task, so no change is missed; ``unwatch`` afterwards. Its result is the task as
        that change left it (None when the change is only known to have happened: re-read it)."""
        future: asyncio.Future[Task | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        return future

    def unwatch(self, task_id: str, future: asyncio.Future[Task | None]) -> None:
        waiting = self._waiters.get(task_id)
        if waiting and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiters[task_id]

    def _wake(self, task_id: str | None = None, task: Task | None = None) -> None:
        """Wake the long-polls and watchers of one task (or of all tasks), with its new state when known."""
        ids = list(self._waiters) if task_id is None else [task_id]
        for waited in ids:
            for future in self._waiters.pop(waited, []):
                if not future.done():
                    future.set_result(task)

    async def wait(self, owner: str, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or as it is after ``timeout`` seconds (long-poll: one request per
        task instead of many). Without first-hand knowledge of the task's end (a shared broker), re-read it
        every second."""
        task = await self.get(owner, task_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        step = timeout if self.cache.authoritative else 1.0
        while task.state not in TERMINAL and (remaining := deadline - loop.time()) > 0:
            future = self.watch(task_id)
            timer = loop.call_later(min(step, remaining), _settle_future, future)
            try:
                await future
            finally:
                timer.cancel()
                self.unwatch(task_id, future)
            task = await self.get(owner, task_id)
        return task

    # -- submit --------------------------------------------------------------------------------------------
    async def submit(self, owner: str, endpoint_id: str, queue: str, request: dict[str, Any],
                     options: TaskOptions | None = None) -> str:
        """Durably record a task, then publish it; the id is returned only after the commit. With an
        idempotency key, a repeat of the same body returns the first task's id; another body is a 409."""
        task_id, _ = await self.submit_task(owner, endpoint_id, queue, request, options)
        return task_id

    async def submit_task(self, owner: str, endpoint_id: str, queue: str, request: dict[str, Any],
                          options: TaskOptions | None = None, start: bool = False) -> tuple[str, Task | None]:
        """``submit``, with the new task (None for an idempotent repeat). With ``start``, the task is inserted
        RUNNING for its first attempt, leased, and not published: the caller runs it now (direct start)."""
        options = options or TaskOptions()
        task_id = new_task_id()
        now = time.time()
        callback = self.seal_callback(options.callback.to_dict()) if options.callback else None
        digest = request_digest(endpoint_id, request, options) if options.idempotency_key else None
        expires_at = now + options.queue_ttl if options.queue_ttl else None
        params = {"id": task_id, "owner": owner, "endpoint_id": endpoint_id, "request": json_param(request),
                  "max_attempts": self.max_attempts, "created_at": now, "priority": options.priority,
                  "expires_at": expires_at, "timeout_seconds": options.timeout,
                  "idempotency_key": options.idempotency_key, "request_digest": digest,
                  "callback": json_param(callback)}
        if start:
            params["lease"] = now + self.lease_seconds
        insert = _SUBMIT_STARTED if start else _SUBMIT
        self.unfinished.add(owner)  # before the first await: a quota check just before this call holds
        try:
            earlier = await self.db.write(self._submit_statement(insert, owner, options.idempotency_key, params))
        except BaseException:
            self.unfinished.remove(owner)
            raise
        if earlier is not None:
            self.unfinished.remove(owner)  # an idempotent repeat: no new task
            key = options.idempotency_key
            if earlier.request_digest != digest:
                raise Conflict(f"Idempotency-Key {key!r} was already used for a different request "
                               f"(task {earlier.id}); use a new key for a new task")
            return str(earlier.id), None
        task = Task(
            id=task_id, owner=owner, endpoint_id=endpoint_id, state=TaskState.RUNNING if start else TaskState.PENDING,
            request=request, attempt=1 if start else 0, max_attempts=self.max_attempts, result=None,
            result_key=None, traceback=None, created_at=now, finished_at=None, started_at=now if start else None,
            priority=options.priority, expires_at=expires_at, timeout_seconds=options.timeout, callback=callback,
        )
        self._changed(task)
        if not start:
            await self.broker.publish(queue, task_id, options.priority, owner)
        return task_id, task

    @staticmethod
    def _submit_statement(insert: DriverStatement, owner: str, key: str | None,
                          params: dict[str, Any]) -> Callable[[sa.Connection], Any]:
        """The insert; with an idempotency key, only if the key is new (else the earlier task's id and digest)."""
        if key is None:
            def submit(conn: sa.Connection) -> None:
                insert.run(conn, params)

            return submit

        def submit_once(conn: sa.Connection) -> Any:
            earlier = conn.execute(
                sa.select(tasks.c.id, tasks.c.request_digest)
                .where(tasks.c.owner == owner, tasks.c.idempotency_key == key)
            ).first()
            if earlier is None:
                insert.run(conn, params)
            return earlier

        return submit_once

    # -- read ------------------------------------------------------------------------------------------------
    async def get(self, owner: str, task_id: str) -> Task:
        cached = self.cache.get(task_id)
        if cached is not None and cached.owner == owner:
            return cached
        drops = self.cache.drops
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(tasks).where(tasks.c.id == task_id, tasks.c.owner == owner)
            )).first()
            if row is None:
                tomb = (await conn.execute(
                    sa.select(task_tombstones).where(task_tombstones.c.id == task_id,
                                                     task_tombstones.c.owner == owner)
                )).first()
        if row is not None:
            task = _row_to_task(row)
            self.cache.put_read(task, drops)  # a finished task polled again (long after, evicted) costs no read
            return task
        if tomb is None:
            raise NotFound(f"no task with id {task_id!r}")
        return Task(id=task_id, owner=owner, endpoint_id="", state=TaskState.EXPIRED, request={}, attempt=0,
                    max_attempts=0, result=None, result_key=None, created_at=0.0, finished_at=tomb.deleted_at,
                    traceback=f"task expired: it ended {tomb.state} and was deleted with its result after the "
                              f"retention period", deleted=True)

    async def position(self, task: Task) -> int | None:
        """About how many tasks go before this PENDING one (the broker's fair-share and priority order)."""
        return await self.broker.position(task.queue, task.id) if task.state is TaskState.PENDING else None

    async def list_for(self, owner: str, endpoint_id: str, states: list[TaskState] | None = None,
                   since: float | None = None, limit: int = 100) -> list[Task]:
        """``owner``'s tasks of one endpoint, newest first."""
        query = sa.select(tasks).where(tasks.c.owner == owner, tasks.c.endpoint_id == endpoint_id)
        if states:
            query = query.where(tasks.c.state.in_([s.value for s in states]))
        if since is not None:
            query = query.where(tasks.c.created_at >= since)
        query = query.order_by(tasks.c.created_at.desc()).limit(limit)
        async with self.db.connect() as conn:
            return [_row_to_task(row) for row in await conn.execute(query)]

    # -- run -------------------------------------------------------------------------------------------------
    async def claim(self, task_id: str) -> Task | None:
        """Lease a PENDING task for one attempt (compare-and-set); None if someone else has it or it ended."""
        now = time.time()
        params = {"id": task_id, "now": now, "lease": now + self.lease_seconds}
        cached = self.cache.get(task_id) if self.cache.authoritative else None
        if cached is not None and cached.state is TaskState.PENDING:
            # this process saw every change of the task: the row need not come back (fenced by the attempt)
            fenced = {**params, "attempt": cached.attempt}
            if await self.db.write(lambda conn: _CLAIM_KNOWN.run(conn, fenced).rowcount):
                task = _evolve(cached, state=TaskState.RUNNING, attempt=cached.attempt + 1, started_at=now)
                self._changed(task)
                return task
        row = await self.db.write(lambda conn: _CLAIM.run(conn, params).first())
        if row is None:
            self.cache.drop(task_id)  # someone else's (or finished): the cache does not know it
            return None
        task = _row_to_task(row)
        self._changed(task)
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
        """Store the outcome of ``task``'s current attempt; False if that lease was lost (fenced out) or the
        task was cancelled meanwhile. The callback (if any) is armed in the same statement."""
        now = time.time()
        state = TaskState.SUCCESS if ok else TaskState.FAILURE
        params = {"id": task.id, "attempt": task.attempt, "result": result, "result_key": result_key,
                  "traceback": traceback, "now": now, "state": state.value}
        stored = bool(await self.db.write(lambda conn: _FINISH.run(conn, params).rowcount))
        if stored:
            self._changed(_evolve(task, state=state, result=result, result_key=result_key, traceback=traceback,
                                  finished_at=now, callback_state="PENDING" if task.callback else None))
        else:
            self.cache.drop(task.id)
            self._wake(task.id)
        return stored

    async def release(self, task: Task, cause: Cause, detail: str) -> TaskState:
        """An attempt ended without an outcome: back to PENDING (published again) or FAILURE, as
        ``retry_decision`` says."""
        decision = retry_decision(cause, task.attempt, task.max_attempts, detail)
        if not decision.retry:
            stored = await self.finish(task, ok=False, traceback=decision.reason)
            return TaskState.FAILURE if stored else task.state
        params = {"id": task.id, "attempt": task.attempt, "reason": decision.reason,
                  "new_attempt": decision.attempt}
        if await self.db.write(lambda conn: _RELEASE.run(conn, params).rowcount):
            self._changed(_evolve(task, state=TaskState.PENDING, traceback=decision.reason,
                                  attempt=decision.attempt))
            await self.broker.publish(task.queue, task.id, task.priority, task.owner)
            return TaskState.PENDING
        self.cache.drop(task.id)
        return task.state

    # -- endings from outside a run ------------------------------------------------------------------------
    async def cancel(self, owner: str, task_id: str) -> tuple[Task, TaskState]:
        """Cancel a task: PENDING or RUNNING → CANCELLED (a running attempt's result will be dropped by the
        fence in ``finish``). Returns the task and the state it had; an ended task is left as it is."""
        params = {"id": task_id, "now": time.time(), "reason": "task cancelled by its owner"}

        def cancel(conn: sa.Connection) -> tuple[Any, Any]:
            before = conn.execute(
                sa.select(tasks).where(tasks.c.id == task_id, tasks.c.owner == owner)
            ).first()
            if before is None or TaskState(before.state) in TERMINAL:
                return before, None
            return before, _CANCEL.run(conn, params).first()

        before, after = await self.db.write(cancel)
        if before is None:
            return await self.get(owner, task_id), TaskState.EXPIRED  # a tombstone, or NotFound
        if after is None:
            return _row_to_task(before), TaskState(before.state)
        task = _row_to_task(after)
        self._changed(task)
        return task, TaskState(before.state)

    async def expire(self) -> int:
        """PENDING tasks past their queue TTL end EXPIRED (never run); returns how many."""
        params = {"now": time.time()}
        rows = await self.db.write(lambda conn: _EXPIRE.run(conn, params).all())
        for row in rows:
            self._changed(_row_to_task(row))
        return len(rows)

    async def reap_expired(self) -> int:
        """Expired leases (their dispatcher died or hung) go through ``retry_decision``: PENDING again and
        published, or FAILURE. Returns how many were requeued."""
        now = time.time()
        detail = "the dispatcher holding the task's lease stopped (server crash or hang)"

        def reap(conn: sa.Connection) -> list[Task]:
            expired = conn.execute(
                sa.select(tasks).where(tasks.c.state == TaskState.RUNNING.value, tasks.c.lease_expires_at < now)
            ).all()
            changed = []
            for row in expired:
                task = _row_to_task(row)
                decision = retry_decision(Cause.LEASE_EXPIRED, task.attempt, task.max_attempts, detail)
                state = TaskState.PENDING if decision.retry else TaskState.FAILURE
                values: dict[str, Any] = {"state": state.value, "lease_expires_at": None,
                                          "traceback": decision.reason, "attempt": decision.attempt}
                if not decision.retry:
                    values.update(finished_at=now, callback_next_at=now if task.callback else None,
                                  callback_state="PENDING" if task.callback else None)
                conn.execute(tasks.update().where(tasks.c.id == task.id, tasks.c.attempt == task.attempt,
                                                  tasks.c.state == TaskState.RUNNING.value).values(**values))
                changed.append(_evolve(task, state=state, traceback=decision.reason, attempt=decision.attempt,
                                       finished_at=None if decision.retry else now,
                                       callback_state=values.get("callback_state", task.callback_state)))
            return changed

        changed = await self.db.write(reap)
        requeued = 0
        for task in changed:
            self._changed(task, cached=False)  # changed behind the cache's back: re-read from the database
            if task.state is TaskState.PENDING:
                await self.broker.publish(task.queue, task.id, task.priority, task.owner)
                requeued += 1
        return requeued

    async def recover(self, endpoint_ids: set[str], drop_queues: list[str] | None = None) -> int:
        """At start-up: reap expired leases and publish every PENDING task of ``endpoint_ids`` again (the
        embedded broker forgot them; duplicates elsewhere are dropped by ``claim``). ``drop_queues``: a shared
        broker outlived the last control loop; those queues are emptied first, then refilled from the database
        (a task submitted meanwhile is committed before it is published, so it is either read here or
        published after the drop)."""
        for queue in drop_queues or []:
            await self.broker.drop(queue)
        await self.reap_expired()
        async with self.db.connect() as conn:
            unfinished = (await conn.execute(
                sa.select(tasks.c.owner, sa.func.count()).where(
                    tasks.c.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value])).group_by(tasks.c.owner)
            )).all()
            self.unfinished.reset({row[0]: row[1] for row in unfinished})
            rows = (await conn.execute(
                sa.select(tasks.c.id, tasks.c.endpoint_id, tasks.c.priority, tasks.c.owner)
                .where(tasks.c.state == TaskState.PENDING.value).order_by(tasks.c.created_at)
            )).all()
        count = 0
        for row in rows:
            if row.endpoint_id in endpoint_ids:
                await self.broker.publish(queue_name(row.endpoint_id), row.id, row.priority, row.owner)
                count += 1
        return count

    async def fail_endpoint_tasks(self, endpoint_id: str, reason: str, pending_only: bool = False) -> None:
        """Unfinished tasks of a deleted (or failed) endpoint end as FAILURE with a reason, never silently
        lost; ``pending_only`` leaves running ones to finish."""
        states = [TaskState.PENDING.value] if pending_only else [TaskState.PENDING.value, TaskState.RUNNING.value]
        now = time.time()
        statement = (
            tasks.update()
            .where(tasks.c.endpoint_id == endpoint_id, tasks.c.state.in_(states))
            .values(state=TaskState.FAILURE.value, traceback=reason, finished_at=now, lease_expires_at=None,
                    callback_next_at=sa.case((tasks.c.callback.is_(None), None), else_=sa.literal(now)),
                    callback_state=sa.case((tasks.c.callback.is_(None), None), else_=sa.literal("PENDING")))
            .returning(*tasks.c)
        )
        rows = await self.db.write(lambda conn: conn.execute(statement).all())
        for row in rows:
            self._changed(_row_to_task(row))

    # -- retention -----------------------------------------------------------------------------------------
    async def sweep_retention(self, now: float | None = None) -> int:
        """Delete finished tasks older than the retention period (and their result objects), leaving
        tombstones; tombstones themselves go after ten retention periods. Tasks whose callback is still
        being delivered wait. Returns how many tasks were deleted."""
        now = time.time() if now is None else now
        cutoff = now - self.retention
        async with self.db.connect() as conn:
            rows = (await conn.execute(
                sa.select(tasks.c.id, tasks.c.owner, tasks.c.state, tasks.c.result_key)
                .where(tasks.c.state.in_([s.value for s in TERMINAL]), tasks.c.finished_at < cutoff,
                       sa.or_(tasks.c.callback_state.is_(None), tasks.c.callback_state != "PENDING"))
                .limit(self.RETENTION_BATCH)
            )).all()
        if self.objects is not None:  # objects first: a crash in between leaves a row to sweep again
            for row in rows:
                if row.result_key:
                    await self.objects.delete(row.result_key)
        ids = [row.id for row in rows]

        def delete(conn: sa.Connection) -> None:
            if ids:
                conn.execute(task_tombstones.insert(), [
                    {"id": row.id, "owner": row.owner, "state": row.state, "deleted_at": now} for row in rows
                ])
                conn.execute(tasks.delete().where(tasks.c.id.in_(ids)))
            conn.execute(task_tombstones.delete().where(task_tombstones.c.deleted_at < now - 10 * self.retention))

        await self.db.write(delete)
        for task_id in ids:
            self.cache.drop(task_id)
        return len(ids)

    # -- callbacks (the outbox) ----------------------------------------------------------------------------
    async def due_callbacks(self, limit: int, exclude: set[str]) -> list[Task]:
        """Ended tasks whose callback is due for (another) delivery attempt."""
        async with self.db.connect() as conn:
            rows = (await conn.execute(
                sa.select(tasks).where(tasks.c.callback_state == "PENDING", tasks.c.callback_next_at <= time.time())
                .order_by(tasks.c.callback_next_at).limit(limit + len(exclude))
            )).all()
        return [_row_to_task(row) for row in rows if row.id not in exclude][:limit]

    def _close_callback_batch(self) -> None:
        self._callback_batch = None

    async def callback_done(self, task: Task, *, delivered: bool, error: str | None,
                            next_at: float | None) -> None:
        """Record one delivery attempt: DELIVERED, retried at ``next_at``, or FAILED (``next_at`` None)."""
        state = "DELIVERED" if delivered else ("PENDING" if next_at is not None else "FAILED")
        params = {"id": task.id, "state": state, "error": error, "next_at": next_at}
        if self._callback_batch is None:  # the records of one event-loop turn go in one executemany
            batch: list[dict[str, Any]] = []
            self._callback_batch = batch

            def record(conn: sa.Connection) -> None:
                _CALLBACK_DONE.run_many(conn, batch)

            asyncio.get_running_loop().call_soon(self._close_callback_batch)  # before the write hands it over
            self._callback_written = asyncio.ensure_future(self.db.write(record))
            written = self._callback_written
        else:
            batch, written = self._callback_batch, self._callback_written
        batch.append(params)
        await asyncio.shield(written)
        self.cache.update(task.id, callback_state=state, callback_attempts=task.callback_attempts + 1,
                          callback_error=error)


def _settle_future(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)
