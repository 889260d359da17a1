"""The task event stream without a server: one event per state change, woken by ``Tasks.watch``, resumed
after ``Last-Event-ID`` without repeats."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import orjson

from launch.server.domain.tasks import Task, TaskState
from launch.server.predictions import ResultLinks
from launch.server.task_events import task_events

LINKS = ResultLinks("http://x", b"k" * 32, 60)
PENDING = Task(id="t", owner="o", endpoint_id="e", state=TaskState.PENDING, request={}, attempt=0, max_attempts=3,
               result=None, result_key=None, traceback=None, created_at=0.0, finished_at=None)


class FakeTasks:
    """The part of ``Tasks`` the stream uses: the task's current state, its queue position, change wake-ups."""

    def __init__(self) -> None:
        self.task, self.queue_position = PENDING, 2
        self.cache = SimpleNamespace(authoritative=True)
        self.waiters: list[asyncio.Future[Task | None]] = []

    async def get(self, owner: str, task_id: str) -> Task:
        return self.task

    async def position(self, task: Task) -> int:
        return self.queue_position

    def watch(self, task_id: str) -> asyncio.Future[Task | None]:
        future: asyncio.Future[Task | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        return future

    def unwatch(self, task_id: str, future: asyncio.Future[Task | None]) -> None:
        self.waiters.remove(future)

    def change(self, task: Task | None = None, position: int | None = None, first_hand: bool = False) -> None:
        """A change; ``first_hand``: made in this process (watchers are woken with the new state)."""
        self.task = task or self.task
        self.queue_position = self.queue_position if position is None else position
        for future in self.waiters:
            if not future.done():
                future.set_result(self.task if first_hand else None)


def _parse(raw: bytes) -> tuple[str, str, dict[str, Any]]:
    fields = dict(line.split(": ", 1) for line in raw.decode().strip().split("\n"))
    return fields["event"], fields["id"], orjson.loads(fields["data"])


def test_each_state_change_is_one_event_and_the_stream_ends_after_the_result() -> None:
    async def scenario() -> list[tuple[str, str, dict[str, Any]]]:
        tasks = FakeTasks()
        stream = task_events(tasks, LINKS, "o", "t")  # type: ignore[arg-type]
        seen = [_parse(await anext(stream))]
        waiting = asyncio.ensure_future(anext(stream, None))
        await asyncio.sleep(0.01)
        tasks.change(position=2)  # woken, but the same state: no event
        await asyncio.sleep(0.05)
        assert not waiting.done()
        for change in ({"position": 1}, {"position": 0}, {"task": replace(PENDING, state=TaskState.RUNNING, attempt=1)},
                       {"task": replace(PENDING, state=TaskState.SUCCESS, attempt=1, result="42")}):
            tasks.change(**change)  # type: ignore[arg-type]
            raw = await asyncio.wait_for(waiting, 2)
            assert raw is not None
            seen.append(_parse(raw))
            waiting = asyncio.ensure_future(anext(stream, None))
            await asyncio.sleep(0.01)
        assert await waiting is None
        return seen

    seen = asyncio.run(scenario())
    assert [(name, event_id) for name, event_id, _ in seen] == [
        ("PENDING", "PENDING-0-2"), ("PENDING", "PENDING-0-1"), ("PENDING", "PENDING-0-0"), ("STARTED", "STARTED-1"),
        ("SUCCESS", "SUCCESS")]
    assert seen[0][2]["queue_position"] == 2
    assert seen[-1][2] | {"task_id": "t", "status": "SUCCESS", "attempts": 1, "result": "42"} == seen[-1][2]


def test_a_reconnect_after_the_final_event_gets_nothing_more() -> None:
    async def scenario() -> list[bytes]:
        tasks = FakeTasks()
        tasks.task = replace(PENDING, state=TaskState.FAILURE, attempt=3, traceback="tb")
        again = task_events(tasks, LINKS, "o", "t", last_event_id="FAILURE")  # type: ignore[arg-type]
        fresh = task_events(tasks, LINKS, "o", "t")  # type: ignore[arg-type]
        return [raw async for raw in again] + [raw async for raw in fresh]

    events = asyncio.run(scenario())
    assert len(events) == 1 and _parse(events[0])[:2] == ("FAILURE", "FAILURE")


def test_a_state_that_lasted_less_than_a_wake_up_is_still_shown() -> None:
    """STARTED then SUCCESS before the watcher runs: the wake-up carries STARTED, so it is not skipped."""
    async def scenario() -> list[str]:
        tasks = FakeTasks()
        tasks.queue_position = 0
        stream = task_events(tasks, LINKS, "o", "t")  # type: ignore[arg-type]
        names = [_parse(await anext(stream))[0]]
        waiting = asyncio.ensure_future(anext(stream, None))
        await asyncio.sleep(0.01)
        tasks.change(task=replace(PENDING, state=TaskState.RUNNING, attempt=1), first_hand=True)
        tasks.task = replace(PENDING, state=TaskState.SUCCESS, attempt=1, result="42")  # no watcher left to wake
        raw = await asyncio.wait_for(waiting, 2)
        assert raw is not None
        names.append(_parse(raw)[0])
        async for event in stream:
            names.append(_parse(event)[0])
        return names

    assert asyncio.run(scenario()) == ["PENDING", "STARTED", "SUCCESS"]
