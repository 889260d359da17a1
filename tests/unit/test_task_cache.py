"""TaskCache: what polling may answer from memory."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from launch.server.domain.tasks import Task, TaskCache, TaskState, _evolve


def task(task_id: str = "t1", state: TaskState = TaskState.PENDING, result: str | None = None) -> Task:
    return Task(id=task_id, owner="alice", endpoint_id="e", state=state, request={"args": {}}, attempt=0,
                max_attempts=3, result=result, result_key=None, traceback=None, created_at=0.0, finished_at=None)


def test_authoritative_cache_keeps_unfinished_tasks() -> None:
    cache = TaskCache(authoritative=True)
    cache.put(task())
    assert cache.get("t1") == task()


def test_shared_broker_cache_keeps_only_finished_tasks() -> None:
    cache = TaskCache(authoritative=False)
    cache.put(task())
    assert cache.get("t1") is None, "another gateway may finish it: its state must be read from the database"
    done = task(state=TaskState.SUCCESS, result='{"y": 1}')
    cache.put(done)
    assert cache.get("t1") == done


def test_a_later_state_replaces_the_earlier_one() -> None:
    cache = TaskCache(authoritative=True)
    cache.put(task())
    running = replace(task(), state=TaskState.RUNNING, attempt=1)
    cache.put(running)
    assert cache.get("t1") == running


def test_large_results_are_not_cached_and_evict_the_stale_entry() -> None:
    cache = TaskCache(authoritative=True)
    cache.put(task())
    cache.put(task(state=TaskState.SUCCESS, result="x" * (TaskCache.MAX_RESULT_BYTES + 1)))
    assert cache.get("t1") is None, "a stale PENDING entry must not outlive the task's real end"


def test_size_is_bounded_oldest_first(monkeypatch: object) -> None:
    cache = TaskCache(authoritative=True)
    cache.MAX_TASKS = 3
    for i in range(5):
        cache.put(task(f"t{i}"))
    assert [cache.get(f"t{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_drop_and_clear() -> None:
    cache = TaskCache(authoritative=True)
    cache.put(task("a"))
    cache.put(task("b"))
    cache.drop("a")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.clear()
    assert cache.get("b") is None


def test_cached_tasks_are_nothing_the_garbage_collector_walks() -> None:
    """A full collection walks every tracked object: 100,000 cached tasks as objects made it a 115 ms pause."""
    cache = TaskCache(authoritative=True)
    callback = {"url": "https://example.com/hook", "auth": {"kind": "basic", "username": "u", "password": "p"}}
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        cache.put(replace(task(f"t{i}"), request={"args": {"x": [i, {"y": i}]}}, callback=callback))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    again = cache.get("t4999")
    assert again is not None and again.request == {"args": {"x": [4999, {"y": 4999}]}} and again.callback == callback
    assert again.state is TaskState.PENDING


def test_a_finished_task_read_from_the_database_is_cached_unless_a_drop_came_meanwhile() -> None:
    cache = TaskCache(authoritative=False)
    done = task(state=TaskState.SUCCESS, result='{"y": 1}')
    before = cache.drops
    cache.put_read(done, before)
    assert cache.get("t1") == done, "a finished task never changes: its next poll needs no read"
    cache.clear()
    before = cache.drops
    cache.drop("t1")  # e.g. the retention sweep deleted it while the row was being read
    cache.put_read(done, before)
    assert cache.get("t1") is None
    before = cache.drops
    cache.update("t1", callback_state="delivered")  # a change to a task that is not cached
    cache.put_read(done, before)
    assert cache.get("t1") is None, "the row read before that change must not be cached"
    cache.put_read(task(), cache.drops)
    assert cache.get("t1") is None, "an unfinished task read from the database may change elsewhere"


def test_an_evolved_task_equals_dataclasses_replace_and_leaves_the_original_alone() -> None:
    original = task("e1")
    evolved = _evolve(original, state=TaskState.RUNNING, attempt=1, started_at=5.0)
    assert evolved == replace(original, state=TaskState.RUNNING, attempt=1, started_at=5.0)
    assert original.state is TaskState.PENDING and original.started_at is None
    with pytest.raises(AssertionError, match="not task fields"):
        _evolve(original, status="RUNNING")
