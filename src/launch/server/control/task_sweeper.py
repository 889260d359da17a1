"""Time-driven task transitions: queue TTLs (EXPIRED), expired leases (retry or fail), retention (delete).

Each is a method of the lifecycle (``domain.tasks``); this loop only decides when to call them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from launch.server.domain.tasks import Tasks

log = logging.getLogger("launch.tasks")


class TaskSweeper:
    def __init__(self, tasks: Tasks, interval: float = 1.0, reap_every: float = 5.0) -> None:
        self.tasks = tasks
        self.interval = interval
        self.reap_every = reap_every
        self.retention_every = min(60.0, max(interval, tasks.retention / 4))
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="task-sweeper")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        last_reap = last_retention = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            try:
                await self.tasks.expire()
                if now - last_reap >= self.reap_every:
                    last_reap = now
                    await self.tasks.reap_expired()
                if now - last_retention >= self.retention_every:
                    last_retention = now
                    while await self.tasks.sweep_retention() >= self.tasks.RETENTION_BATCH:
                        await asyncio.sleep(0)  # a backlog: more batches, without holding the loop
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task sweep failed; retrying")
