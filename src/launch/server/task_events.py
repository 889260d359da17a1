"""Watch an async task live: each state change as a server-sent event — PENDING (with its place in the
queue), STARTED, then SUCCESS or FAILURE with the same body as ``GET /v1/async-tasks/{id}`` — and the stream
ends after the final one.

Every event carries an ``id`` derived from the task's state, so a client that reconnects (the server
restarted, the connection dropped) sends ``Last-Event-ID`` and is not told the same state twice: the state
is re-read, never replayed from memory. Changes made in this process wake the watcher at once
(``Tasks.subscribe``); a PENDING task is re-read every second for its queue position, and without first-hand
knowledge (a shared broker) every task is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from launch.server.domain.tasks import TERMINAL, Task, Tasks, TaskState
from launch.server.predictions import ResultLinks, task_view

HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 1.0


def sse_event(name: str, event_id: str, data: dict[str, Any]) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), orjson.dumps(data))


def describe(task: Task, links: ResultLinks, position: int | None) -> tuple[str, str, dict[str, Any]]:
    """(event name, event id, data) for the task's current state."""
    if task.state in TERMINAL:
        return task.state.value, task.state.value, task_view(task, links.url)
    if task.state is TaskState.RUNNING:
        return "STARTED", f"STARTED-{task.attempt}", {"task_id": task.id, "status": "STARTED",
                                                      "attempt": task.attempt}
    data = {"task_id": task.id, "status": "PENDING", "queue_position": position, "attempts": task.attempt}
    return "PENDING", f"PENDING-{task.attempt}-{position}", data


async def task_events(tasks: Tasks, links: ResultLinks, owner: str, task_id: str, last_event_id: str | None = None,
                      wait: float | None = None) -> AsyncIterator[bytes]:
    """The event stream of one task, until it ends (or for ``wait`` seconds, then the client reconnects)."""
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    last_write = time.monotonic()
    woken_with: Task | None = None  # the state a change of this process woke us with: shown as it was
    while True:
        changed = tasks.watch(task_id)  # before reading: no change slips between the read and the wait
        try:
            # a re-read could already see the state after it (STARTED then SUCCESS within a millisecond)
            task = woken_with if woken_with is not None else await tasks.get(owner, task_id)
            position = await tasks.position(task) if task.state is TaskState.PENDING else None
            name, event_id, data = describe(task, links, position)
            if event_id != last_event_id:
                yield sse_event(name, event_id, data)
                last_event_id, last_write = event_id, time.monotonic()
            if task.state in TERMINAL:
                return
            recheck = task.state is TaskState.PENDING or not tasks.cache.authoritative
            timeout = RECHECK_SECONDS if recheck else HEARTBEAT_SECONDS
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
                if timeout <= 0:
                    return
            if woken_with is not None:  # shown as it was: now read what it is (its next change may be past)
                woken_with = None
                continue
            await asyncio.wait({changed}, timeout=timeout)
            if changed.done():
                woken_with = changed.result()
            if time.monotonic() - last_write >= HEARTBEAT_SECONDS:
                yield b": keep-alive\n\n"  # a comment: keeps proxies and clients from timing out
                last_write = time.monotonic()
        finally:
            tasks.unwatch(task_id, changed)
