"""Time-driven task transitions: queue TTLs (EXPIRED), expired leases (retry or fail), retention (delete: tasks,
ended batch jobs, and sync results whose URLs have expired).

Each is a method of the lifecycle (``domain.tasks``); this loop only decides when to call them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from launch.server.domain.batch_jobs import BatchJobs
from launch.server.domain.results import SYNC_RESULTS, expired_hours
from launch.server.domain.tasks import Tasks
from launch.stores.objects import ObjectStore

log = logging.getLogger("launch.tasks")


class TaskSweeper:
    """``result_ttl``: how long a result URL is valid; sync results (no task row) go an hour after their last
    URL expired."""

    SYNC_RESULTS_EVERY = 600.0

    def __init__(self, tasks: Tasks, interval: float = 1.0, reap_every: float = 5.0,
                 objects: ObjectStore | None = None, result_ttl: float = 12 * 3600,
                 batch_jobs: BatchJobs | None = None) -> None:
        self.tasks = tasks
        self.interval = interval
        self.reap_every = reap_every
        self.retention_every = min(60.0, max(interval, tasks.retention / 4))
        self.objects = objects
        self.result_ttl = result_ttl
        self.batch_jobs = batch_jobs
        self._loop: asyncio.Task[None] | None = None

    async def sweep_sync_results(self, now: float | None = None) -> int:
        """Delete the hours of sync results whose every URL has expired; how many files went (a segment file
        holds many results)."""
        if self.objects is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.result_ttl
        deleted = 0
        for hour in expired_hours(await self.objects.children(f"{SYNC_RESULTS}/"), cutoff):
            deleted += await self.objects.delete_prefix(f"{SYNC_RESULTS}/{hour}/")
        return deleted

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="task-sweeper")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        last_reap = last_retention = time.monotonic()
        last_sync_results = last_reap - self.SYNC_RESULTS_EVERY  # the first pass sweeps them
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
                    if self.batch_jobs is not None:
                        while (await self.batch_jobs.sweep_retention(self.tasks.retention)
                               >= self.batch_jobs.RETENTION_BATCH):
                            await asyncio.sleep(0)
                if now - last_sync_results >= self.SYNC_RESULTS_EVERY:
                    last_sync_results = now
                    await self.sweep_sync_results()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task sweep failed; retrying")
