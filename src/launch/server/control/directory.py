"""The ready workers of every endpoint, published in the database by the gateway that runs the control loop,
so that every other gateway's sync path reaches them in one hop as well.

The leader adds a row when a worker is ready and removes it when the worker drains or dies, then notifies
(``changes.WORKERS``); the other gateways mirror the rows of that endpoint into their own ``Pools`` (their
in-flight counts stay their own). Mirrors are refreshed on every notification and every few seconds, so a lost
notification costs seconds, not correctness: a worker that is gone answers with a broken connection, which the
sync path already retries on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import sqlalchemy as sa

from launch.server.control.pool import Pools, WorkerRef
from launch.stores import changes as topics
from launch.stores.changes import Changes
from launch.stores.database import Database
from launch.stores.schema import ready_workers

log = logging.getLogger("launch.directory")
REFRESH_SECONDS = 5.0


def sync_pool(workers: list[WorkerRef], rows: list[Any]) -> list[WorkerRef]:
    """The mirrored workers after reading ``rows``: known ones kept (with their in-flight counts), new ones
    added, vanished ones dropped (pure)."""
    known = {w.worker_id: w for w in workers}
    result = []
    for row in rows:
        worker = known.get(row.worker_id)
        if worker is None or worker.address != row.address:
            worker = WorkerRef(row.worker_id, row.address, row.generation, capacity=row.capacity)
        else:
            worker.capacity = row.capacity
        result.append(worker)
    return result


class WorkerDirectory:
    def __init__(self, db: Database, pools: Pools, changes: Changes, holder: str) -> None:
        self.db = db
        self.pools = pools
        self.changes = changes
        self.holder = holder
        self.mirroring = False
        self._loop: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        changes.subscribe(topics.WORKERS, self._changed)

    # -- the leader ------------------------------------------------------------------------------------
    async def publish(self, endpoint_id: str, worker: WorkerRef) -> None:
        values = {"worker_id": worker.worker_id, "endpoint_id": endpoint_id, "generation": worker.generation,
                  "address": worker.address, "capacity": worker.capacity, "holder": self.holder,
                  "created_at": time.time()}
        await self.db.write(lambda conn: conn.execute(ready_workers.insert().values(**values)))
        self.changes.publish(topics.WORKERS, endpoint_id)

    async def withdraw(self, endpoint_id: str, worker_id: str) -> None:
        """Remove a worker's row (never raises: a stale row only costs the others a failed connection)."""
        statement = ready_workers.delete().where(ready_workers.c.worker_id == worker_id)
        try:
            await self.db.write(lambda conn: conn.execute(statement))
        except Exception:
            log.exception("could not withdraw worker %s", worker_id)
        self.changes.publish(topics.WORKERS, endpoint_id)

    async def take_over(self) -> None:
        """On election: stop mirroring, forget the mirrored workers (the control loop owns the pools now) and
        the rows of earlier leaders (their workers stop with them)."""
        await self._stop_mirroring()
        self.pools.clear_workers()
        statement = ready_workers.delete()
        await self.db.write(lambda conn: conn.execute(statement))
        self.changes.publish(topics.WORKERS, "*")

    async def hand_over(self) -> None:
        """On deposition (the control loop and its workers have stopped): withdraw our rows, mirror again."""
        statement = ready_workers.delete().where(ready_workers.c.holder == self.holder)
        with contextlib.suppress(Exception):
            await self.db.write(lambda conn: conn.execute(statement))
        self.changes.publish(topics.WORKERS, "*")
        self.pools.clear_workers()
        self.start_mirroring()

    # -- the others ------------------------------------------------------------------------------------
    def start_mirroring(self) -> None:
        if self._loop is None:
            self.mirroring = True
            self._dirty.add("*")
            self._loop = asyncio.create_task(self._mirror_loop(), name="worker-directory")

    async def _stop_mirroring(self) -> None:
        self.mirroring = False
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None

    def _changed(self, endpoint_id: str) -> None:
        if self.mirroring:
            self._dirty.add(endpoint_id)
            self._wake.set()

    async def _mirror_loop(self) -> None:
        last_full = 0.0
        while True:
            try:
                if time.monotonic() - last_full > REFRESH_SECONDS:
                    self._dirty.add("*")
                dirty, self._dirty = self._dirty, set()
                if "*" in dirty:
                    last_full = time.monotonic()
                await self.refresh(None if "*" in dirty else dirty)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not read the ready workers")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REFRESH_SECONDS)

    async def refresh(self, endpoint_ids: set[str] | None) -> None:
        """Mirror the rows of ``endpoint_ids`` (all endpoints for None) into the pools."""
        query = sa.select(ready_workers).order_by(ready_workers.c.created_at)
        if endpoint_ids is not None:
            query = query.where(ready_workers.c.endpoint_id.in_(endpoint_ids))
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        by_endpoint: dict[str, list[Any]] = {e: [] for e in endpoint_ids or ()}
        for row in rows:
            by_endpoint.setdefault(row.endpoint_id, []).append(row)
        if endpoint_ids is None:
            for endpoint_id in self.pools.ids():
                by_endpoint.setdefault(endpoint_id, [])
        for endpoint_id, endpoint_rows in by_endpoint.items():
            pool = self.pools.get(endpoint_id)
            pool.workers = sync_pool(pool.workers, endpoint_rows)
            await pool.notify()

    async def close(self) -> None:
        await self._stop_mirroring()
