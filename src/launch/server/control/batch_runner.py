"""Runs batch jobs: items pushed to workers with bounded concurrency, each outcome committed as it lands.
Unfinished jobs are resumed at start-up (finished items are skipped).

Where a READY endpoint serves the job's bundle, its warm workers take items while they have spare capacity
(``per_worker`` minus what they run): no worker to start, first results at once. What they cannot take goes
to a private worker of the job, started from the bundle's environment (built once, cached)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.net_guard import FetchPolicy
from launch.server.control.pool import EndpointPool, WorkerRef
from launch.server.control.workers import BundleUnavailable, WorkerFactory
from launch.server.domain.batch_jobs import RESULTS_PREFIX, BatchJob, BatchJobs
from launch.server.domain.bundles import Bundles
from launch.server.environments import EnvironmentBuildError
from launch.server.inputs import prepare
from launch.server.worker_client import WorkerClient, WorkerUnreachable
from launch.stores.objects import ObjectStore
from launch.stores.placement import Placement, WorkerHandle, WorkerStartError

log = logging.getLogger("launch.batch")
WORKER_RESTARTS = 3


class BatchRunner:
    def __init__(self, jobs: BatchJobs, bundles: Bundles, factory: WorkerFactory, placement: Placement,
                 client: WorkerClient, objects: ObjectStore, logs_root: Path, concurrency: int = 4,
                 item_timeout: float = 3600.0, fetch_policy: FetchPolicy | None = None,
                 warm_pools: Callable[[str], list[EndpointPool]] = lambda bundle_id: []) -> None:
        self.jobs = jobs
        self.bundles = bundles
        self.factory = factory
        self.placement = placement
        self.client = client
        self.objects = objects
        self.logs_root = logs_root
        self.concurrency = concurrency
        self.item_timeout = item_timeout
        self.fetch_policy = fetch_policy or FetchPolicy()
        self.warm_pools = warm_pools
        self.wakeup = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        jobs.listeners.append(lambda _job_id: self.wakeup.set())

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._watch(), name="batch-runner")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch(self) -> None:
        while True:
            try:
                for job in await self.jobs.unfinished():
                    if job.id not in self._running:
                        task = asyncio.create_task(self._run(job), name=f"batch-{job.id}")
                        self._running[job.id] = task
                        task.add_done_callback(self._forget(job.id))
            except Exception:
                log.exception("batch runner pass failed")
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), 5.0)

    def _forget(self, job_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(job_id, None)

        return done

    async def _run(self, job: BatchJob) -> None:
        await self.jobs.mark_running(job.id)
        items = await self.jobs.pending_items(job.id)
        items = await self._process_on_warm_workers(job, items)
        for restart in range(WORKER_RESTARTS + 1):
            if not items:
                break
            try:
                handle = await self._start_worker(job)
            except (WorkerStartError, EnvironmentBuildError, BundleUnavailable) as exc:
                tail = getattr(exc, "log_tail", "")
                await self.jobs.finish(job, error=f"the bundle's worker failed to start: {exc}\n{tail}".strip())
                return
            try:
                items = await self._process(job, handle, items)
            finally:
                await self.placement.stop(handle.worker_id, grace=5.0)
                self.client.forget(handle.address)
            if not items:
                break
            log.warning("batch job %s: worker died, restarting (%d/%d)", job.id, restart + 1, WORKER_RESTARTS)
        else:
            await self.jobs.finish(job, error=f"the job's worker died {WORKER_RESTARTS + 1} times; giving up")
            return
        await self.jobs.finish(job)

    async def _process_on_warm_workers(self, job: BatchJob, items: list[tuple[str, dict[str, Any]]]
                                       ) -> list[tuple[str, dict[str, Any]]]:
        """Run items on the spare capacity of endpoints serving the job's bundle; returns what is left (all
        of it when none has spare capacity, or when a worker fails under an item)."""
        pools = self.warm_pools(job.bundle_id)
        if not items or not any(pool.pick_with_capacity() for pool in pools):
            return items
        queue = list(reversed(items))
        leftover: list[tuple[str, dict[str, Any]]] = []

        def spare() -> WorkerRef | None:
            best: WorkerRef | None = None
            for pool in pools:
                worker = pool.pick_with_capacity()
                if worker is not None and (best is None or worker.capacity - worker.inflight >
                                           best.capacity - best.inflight):
                    best = worker
            return best

        async def consume() -> None:
            while queue and not leftover:
                worker = spare()
                if worker is None:  # the endpoints' own traffic comes first: the rest goes to a job worker
                    return
                item = queue.pop()
                worker.inflight += 1
                try:
                    await self._run_item(job, worker.address, *item)
                except (WorkerUnreachable, TimeoutError):
                    leftover.append(item)
                finally:
                    worker.inflight -= 1

        await asyncio.gather(*(consume() for _ in range(self.concurrency)))
        log.info("batch job %s: %d items ran on warm endpoint workers", job.id, len(items) - len(queue) -
                 len(leftover))
        return leftover + list(reversed(queue))

    async def _start_worker(self, job: BatchJob) -> WorkerHandle:
        bundle = await self.bundles.get_by_id(job.bundle_id)
        spec = await self.factory.spec(bundle, owner_id=f"batch-{job.id}", worker_id=uuid.uuid4().hex[:12],
                                       generation=1, threads=self.concurrency,
                                       log_dir=self.logs_root / "batch" / job.id)
        return await self.placement.start(spec)

    async def _process(self, job: BatchJob, handle: WorkerHandle,
                       items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        """Run ``items`` on the worker; returns the ones left undone because the worker died."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        leftover: list[tuple[str, dict[str, Any]]] = []

        async def consume() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                if leftover:  # the worker died: keep the rest for the next worker
                    leftover.append(item)
                    continue
                try:
                    await self._run_item(job, handle.address, *item)
                except (WorkerUnreachable, TimeoutError):
                    leftover.append(item)

        await asyncio.gather(*(consume() for _ in range(self.concurrency)))
        return leftover

    async def _run_item(self, job: BatchJob, address: str, item_id: str, request: dict[str, Any]) -> None:
        prepared = await prepare(request, self.fetch_policy)
        if prepared.failure is not None:
            await self.jobs.record_item(job.id, item_id, ok=False, traceback=prepared.failure)
            return
        reply = await self.client.predict(address, prepared.payload, self.item_timeout, prepared.kind)
        if reply.rejected:
            raise WorkerUnreachable(f"worker refused the item: {reply.detail}", sent=False)
        if reply.pickled:
            key = f"{RESULTS_PREFIX}/{job.owner}/{job.id}/{item_id}.pkl"
            await self.objects.put(key, reply.body)
            await self.jobs.record_item(job.id, item_id, ok=True, output_key=key)
        else:
            ok, result, traceback = reply.json_outcome()
            await self.jobs.record_item(job.id, item_id, ok=ok, output=result, traceback=traceback)
