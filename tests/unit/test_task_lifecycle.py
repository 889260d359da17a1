"""The task lifecycle (``domain.tasks``) on a temporary SQLite database: every transition in milliseconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from launch.server.domain.errors import Conflict, NotFound
from launch.server.domain.task_options import Callback, TaskOptions
from launch.server.domain.task_policy import Cause, TaskState
from launch.server.domain.tasks import Task, TaskCache, Tasks
from launch.stores.broker.embedded import EmbeddedBroker
from launch.stores.database import Database, migrate
from launch.stores.objects.local import LocalObjectStore

Q = "endpoint.e1"
REQUEST = {"args": {"x": 1}, "return_pickled": False}


def scenario(tmp_path: Path, body: Callable[[Tasks, EmbeddedBroker], Awaitable[None]], **kwargs: object) -> None:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)

    async def run() -> None:
        db, broker = Database(url), EmbeddedBroker()
        tasks = Tasks(db, broker, max_attempts=2, lease_seconds=60, cache=TaskCache(authoritative=True),
                      objects=LocalObjectStore(str(tmp_path / "objects")), **kwargs)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(body(tasks, broker), 10)
        finally:
            await db.close()

    asyncio.run(run())


def test_submit_claim_finish(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        seen: list[tuple[str, TaskState]] = []
        tasks.subscribe(lambda t: seen.append((t.id, t.state)))
        task_id = await tasks.submit("alice", "e1", Q, REQUEST)
        assert await broker.consume(Q, 0.1) == task_id
        task = await tasks.claim(task_id)
        assert task is not None and task.state is TaskState.RUNNING and task.attempt == 1
        assert await tasks.claim(task_id) is None  # compare-and-set: one claim
        assert await tasks.finish(task, ok=True, result='{"y": 2}')
        tasks.cache.clear()
        stored = await tasks.get("alice", task_id)
        assert (stored.state, stored.result, stored.attempt) == (TaskState.SUCCESS, '{"y": 2}', 1)
        assert tasks.cache.get(task_id) == stored, "read once after its eviction, then polled from memory"
        assert [s for _, s in seen] == [TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCESS]
        with pytest.raises(NotFound):
            await tasks.get("bob", task_id)

    scenario(tmp_path, body)


def test_endpoint_listeners_hear_only_their_endpoint(tmp_path: Path) -> None:
    async def body(tasks: Tasks, _broker: EmbeddedBroker) -> None:
        heard: dict[str, list[str]] = {"e1": [], "e2": [], "all": []}
        stop_e1 = tasks.subscribe(lambda t: heard["e1"].append(t.endpoint_id), "e1")
        tasks.subscribe(lambda t: heard["e2"].append(t.endpoint_id), "e2")
        tasks.subscribe(lambda t: heard["all"].append(t.endpoint_id))
        await tasks.submit("alice", "e1", Q, REQUEST)
        await tasks.submit("alice", "e2", "endpoint.e2", REQUEST)
        stop_e1()
        await tasks.submit("alice", "e1", Q, REQUEST)
        assert heard == {"e1": ["e1"], "e2": ["e2"], "all": ["e1", "e2", "e1"]}

    scenario(tmp_path, body)


def test_a_late_result_of_an_earlier_attempt_is_fenced_out(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        task_id = await tasks.submit("alice", "e1", Q, REQUEST)
        first = await tasks.claim(task_id)
        assert first is not None
        assert await tasks.release(first, Cause.WORKER_LOST, "connection reset") is TaskState.PENDING
        second = await tasks.claim(task_id)
        assert second is not None and second.attempt == 2
        assert not await tasks.finish(first, ok=True, result="late")
        assert await tasks.finish(second, ok=True, result="winner")
        assert (await tasks.get("alice", task_id)).result == "winner"

    scenario(tmp_path, body)


def test_release_gives_back_unrun_attempts_and_fails_the_last(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        task_id = await tasks.submit("alice", "e1", Q, REQUEST)
        await broker.consume(Q, 0.1)
        task = await tasks.claim(task_id)
        assert task is not None
        await tasks.release(task, Cause.NOT_SENT, "refused")
        assert await broker.consume(Q, 0.1) == task_id  # published again
        task = await tasks.claim(task_id)
        assert task is not None and task.attempt == 1  # the refused attempt did not count
        await tasks.release(task, Cause.WORKER_LOST, "died")
        task = await tasks.claim(task_id)
        assert task is not None and task.attempt == 2
        assert await tasks.release(task, Cause.WORKER_LOST, "died again") is TaskState.FAILURE
        failed = await tasks.get("alice", task_id)
        assert failed.state is TaskState.FAILURE and "after 2 attempts" in (failed.traceback or "")

    scenario(tmp_path, body)


def test_a_time_out_fails_at_once(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        task_id = await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(timeout=2.0))
        task = await tasks.claim(task_id)
        assert task is not None and task.timeout_seconds == 2.0
        assert await tasks.release(task, Cause.TIMED_OUT, "ran longer than 2 s") is TaskState.FAILURE
        assert "timed out on attempt 1" in ((await tasks.get("alice", task_id)).traceback or "")

    scenario(tmp_path, body)


def test_reap_requeues_expired_leases_then_fails(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        tasks.lease_seconds = -1  # every lease is already expired
        task_id = await tasks.submit("alice", "e1", Q, REQUEST)
        await broker.consume(Q, 0.1)
        assert await tasks.claim(task_id) is not None
        assert await tasks.reap_expired() == 1
        assert await broker.consume(Q, 0.1) == task_id
        assert (await tasks.get("alice", task_id)).state is TaskState.PENDING
        assert await tasks.claim(task_id) is not None
        assert await tasks.reap_expired() == 0  # second attempt was the last
        assert (await tasks.get("alice", task_id)).state is TaskState.FAILURE

    scenario(tmp_path, body)


def test_queue_ttl_expires_pending_tasks_and_arms_the_callback(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        callback = Callback("http://127.0.0.1:1/cb")
        task_id = await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(queue_ttl=0.01, callback=callback))
        kept = await tasks.submit("alice", "e1", Q, REQUEST)
        await asyncio.sleep(0.02)
        assert await tasks.claim(task_id) is None  # past its TTL: never claimed, even before the sweep
        assert await tasks.expire() == 1
        expired = await tasks.get("alice", task_id)
        assert expired.state is TaskState.EXPIRED and expired.callback_state == "PENDING"
        assert await tasks.claim(task_id) is None  # never runs
        assert (await tasks.get("alice", kept)).state is TaskState.PENDING
        assert [t.id for t in await tasks.due_callbacks(10, set())] == [task_id]

    scenario(tmp_path, body)


def test_cancel_pending_and_running(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        pending = await tasks.submit("alice", "e1", Q, REQUEST)
        task, before = await tasks.cancel("alice", pending)
        assert (task.state, before) == (TaskState.CANCELLED, TaskState.PENDING)
        assert await tasks.claim(pending) is None
        running_id = await tasks.submit("alice", "e1", Q, REQUEST)
        running = await tasks.claim(running_id)
        assert running is not None
        task, before = await tasks.cancel("alice", running_id)
        assert (task.state, before) == (TaskState.CANCELLED, TaskState.RUNNING)
        assert not await tasks.finish(running, ok=True, result="dropped")  # the result is discarded
        assert (await tasks.get("alice", running_id)).result is None
        task, before = await tasks.cancel("alice", running_id)  # again: nothing changes
        assert before is TaskState.CANCELLED
        with pytest.raises(NotFound):
            await tasks.cancel("bob", running_id)

    scenario(tmp_path, body)


def test_idempotent_submission(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        options = TaskOptions(idempotency_key="order-42")
        first = await tasks.submit("alice", "e1", Q, REQUEST, options)
        assert await tasks.submit("alice", "e1", Q, REQUEST, options) == first
        assert await broker.depth(Q) == 1  # the repeat was not queued again
        with pytest.raises(Conflict):
            await tasks.submit("alice", "e1", Q, {"args": {"x": 2}, "return_pickled": False}, options)
        assert await tasks.submit("bob", "e1", Q, REQUEST, options) != first  # keys are per owner

    scenario(tmp_path, body)


def test_retention_deletes_rows_and_objects_and_leaves_a_tombstone(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        assert tasks.objects is not None
        task_id = await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(idempotency_key="k"))
        task = await tasks.claim(task_id)
        assert task is not None
        await tasks.objects.put("results/alice/x.pkl", b"pickled")
        await tasks.finish(task, ok=True, result_key="results/alice/x.pkl")
        young = await tasks.submit("alice", "e1", Q, REQUEST)
        assert await tasks.sweep_retention(now=time.time() + 30) == 0  # not old enough
        assert await tasks.sweep_retention(now=time.time() + 120) == 1  # pending tasks are kept
        assert not await tasks.objects.exists("results/alice/x.pkl")
        gone = await tasks.get("alice", task_id)
        assert gone.state is TaskState.EXPIRED and gone.deleted and "SUCCESS" in (gone.traceback or "")
        with pytest.raises(NotFound):
            await tasks.get("bob", task_id)
        assert (await tasks.get("alice", young)).state is TaskState.PENDING
        assert await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(idempotency_key="k")) != task_id

    scenario(tmp_path, body, retention=60.0)


def test_callback_outbox_records_deliveries(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        task_id = await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(callback=Callback("http://h/cb")))
        task = await tasks.claim(task_id)
        assert task is not None
        assert await tasks.due_callbacks(10, set()) == []  # nothing before the task ends
        await tasks.finish(task, ok=False, traceback="Traceback...\nValueError: bad")
        due = await tasks.due_callbacks(10, set())
        assert [t.id for t in due] == [task_id] and due[0].callback == {"url": "http://h/cb", "auth": None}
        assert await tasks.due_callbacks(10, {task_id}) == []
        await tasks.callback_done(due[0], delivered=False, error="HTTP 503", next_at=time.time() + 60)
        assert await tasks.due_callbacks(10, set()) == []  # not due yet
        await tasks.callback_done(due[0], delivered=True, error=None, next_at=None)
        tasks.cache.clear()
        done: Task = await tasks.get("alice", task_id)
        assert (done.callback_state, done.callback_attempts) == ("DELIVERED", 2)

    scenario(tmp_path, body)


def test_recover_republishes_pending_tasks_with_priority(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        low = await tasks.submit("alice", "e1", Q, REQUEST)
        high = await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(priority=5))
        await broker.drop(Q)  # what a restart does to the embedded broker
        assert await tasks.recover({"e1"}) == 2
        assert [await broker.consume(Q, 0.1) for _ in range(2)] == [high, low]

    scenario(tmp_path, body)


def test_callback_records_of_one_turn_share_a_write(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        ids = [await tasks.submit("alice", "e1", Q, REQUEST, TaskOptions(callback=Callback("http://h/cb")))
               for _ in range(5)]
        for task_id in ids:
            task = await tasks.claim(task_id)
            assert task is not None
            await tasks.finish(task, ok=True, result="1")
        due = await tasks.due_callbacks(10, set())
        await asyncio.gather(*(tasks.callback_done(t, delivered=True, error=None, next_at=None) for t in due))
        await tasks.callback_done(due[0], delivered=True, error=None, next_at=None)  # a later turn: its own
        tasks.cache.clear()
        states = [(await tasks.get("alice", i)).callback_state for i in ids]
        assert states == ["DELIVERED"] * 5
        assert (await tasks.get("alice", due[0].id)).callback_attempts == 2

    scenario(tmp_path, body)


def test_a_task_started_at_submission_is_leased_not_queued(tmp_path: Path) -> None:
    """Direct start: inserted RUNNING for its first attempt, never published; its outcome is stored like a
    claimed task's, and a lease that runs out (the gateway died) sends it back to the queue."""
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        seen: list[TaskState] = []
        tasks.subscribe(lambda t: seen.append(t.state))
        task_id, task = await tasks.submit_task("alice", "e1", Q, REQUEST, start=True)
        assert task is not None and (task.id, task.state, task.attempt) == (task_id, TaskState.RUNNING, 1)
        assert await broker.depth(Q) == 0
        assert await tasks.claim(task_id) is None  # nobody else can claim it
        tasks.cache.clear()
        stored = await tasks.get("alice", task_id)
        assert (stored.state, stored.attempt, stored.started_at) == (TaskState.RUNNING, 1, task.created_at)
        assert await tasks.finish(task, ok=True, result='{"y": 2}')
        assert (await tasks.get("alice", task_id)).state is TaskState.SUCCESS
        assert seen == [TaskState.RUNNING, TaskState.SUCCESS]

        tasks.lease_seconds = -1  # every lease is already expired
        lost_id, _ = await tasks.submit_task("alice", "e1", Q, REQUEST, start=True)
        assert await tasks.reap_expired() == 1
        assert await broker.consume(Q, 0.1) == lost_id
        assert (await tasks.get("alice", lost_id)).state is TaskState.PENDING

    scenario(tmp_path, body)


def test_an_idempotent_repeat_starts_nothing(tmp_path: Path) -> None:
    async def body(tasks: Tasks, broker: EmbeddedBroker) -> None:
        options = TaskOptions(idempotency_key="k1")
        first, task = await tasks.submit_task("alice", "e1", Q, REQUEST, options, start=True)
        again, repeat = await tasks.submit_task("alice", "e1", Q, REQUEST, options, start=True)
        assert task is not None and repeat is None and again == first

    scenario(tmp_path, body)


def test_task_ids_are_random_uuid7_in_time_order() -> None:
    import uuid

    from launch.server.domain.tasks import new_task_id

    ids = [new_task_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # the millisecond prefix never goes back
    assert abs(int(ids[-1][:8] + ids[-1][9:13], 16) / 1000 - time.time()) < 5
