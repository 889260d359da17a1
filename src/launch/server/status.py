"""What the platform is doing right now, read for ``/metrics``, the dashboard and ``launch status``: endpoints
with their workers, load and latencies, async tasks with their queue position, batch jobs with their progress.

Read-only. Per-request numbers come from ``Metrics``; the rest is read from the control plane's memory
(pools, the reconciler's runtimes), the broker, the database, and the workers themselves (a ``wire.STATS``
frame per worker for its compute-time histogram, at most once a second; what a worker that died had not
reported yet is lost with it — the gateway's own latency histograms lose nothing).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import sqlalchemy as sa

from launch import wire
from launch.histogram import Histogram
from launch.server.activity import Activity
from launch.server.control.reconciler import EndpointRuntime, Reconciler
from launch.server.domain.endpoints import Endpoint, Endpoints
from launch.server.metrics import POLL_ROUTES, EndpointGauges, Metrics, PlatformSnapshot
from launch.server.worker_client import WorkerClient
from launch.stores.broker import Broker
from launch.stores.database import Database
from launch.stores.schema import batch_items, batch_jobs, tasks

STATS_TIMEOUT = 1.0
REFRESH_EVERY = 1.0
TASKS_SHOWN = 50
QUANTILES = (0.5, 0.9, 0.99)


def worker_states(rt: EndpointRuntime | None) -> dict[str, int]:
    """Workers of an endpoint by state: starting, serving, draining, broken, retiring."""
    states = {"starting": 0, "serving": 0, "draining": 0, "broken": 0, "retiring": 0}
    if rt is None:
        return states
    states["starting"] = len(rt.starting)
    for worker in rt.pool.workers:
        if worker.broken:
            states["broken"] += 1
        elif worker.draining:
            states["draining"] += 1
        elif worker.retiring:
            states["retiring"] += 1
        else:
            states["serving"] += 1
    return states


def quantiles(hist: Histogram | None) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": (hist.quantile(q) if hist is not None else None) for q in QUANTILES}


class PlatformStatus:
    def __init__(self, *, db: Database, endpoints: Endpoints, reconciler: Reconciler, broker: Broker,
                 client: WorkerClient, metrics: Metrics, activity: Activity) -> None:
        self.db = db
        self.endpoints = endpoints
        self.reconciler = reconciler
        self.broker = broker
        self.client = client
        self.metrics = metrics
        self.activity = activity
        self.snapshot = PlatformSnapshot()
        self._refreshed = 0.0
        self._lock = asyncio.Lock()
        self._worker_compute: dict[str, tuple[str, Histogram]] = {}  # worker id -> (endpoint id, last report)
        self._retired_compute: dict[str, Histogram] = {}  # endpoint id -> sum of workers that are gone

    # -- the snapshot behind /metrics ---------------------------------------------------------------------
    async def refresh(self) -> PlatformSnapshot:
        """Re-read gauges and worker compute histograms (at most once per ``REFRESH_EVERY`` seconds)."""
        async with self._lock:
            if time.monotonic() - self._refreshed < REFRESH_EVERY and not self._unnamed():
                return self.snapshot
            records = await self.endpoints.list()
            gauges = []
            for endpoint in records:
                self.metrics.name(endpoint.id, endpoint.owner, endpoint.name)
                rt = self.reconciler.runtimes.get(endpoint.id)
                gauges.append(EndpointGauges(
                    endpoint_id=endpoint.id, owner=endpoint.owner, name=endpoint.name, status=endpoint.status.value,
                    inflight=rt.pool.inflight if rt else 0, queued=await self._queued(endpoint),
                    desired_workers=rt.desired if rt else None, workers=worker_states(rt),
                ))
            known = {e.id for e in records}
            for endpoint_id in self.metrics.endpoint_ids() - known:  # deleted before it was ever named
                self.metrics.names.setdefault(endpoint_id, ("", endpoint_id))
            await self._collect_compute()
            self.snapshot = PlatformSnapshot(gauges, await self._batch_counts())
            self._refreshed = time.monotonic()
            return self.snapshot

    def _unnamed(self) -> bool:
        """An endpoint id was counted that has no labels yet (created since the last refresh)."""
        names = self.metrics.names
        return any(endpoint_id and endpoint_id not in names for endpoint_id in self.metrics.endpoint_ids())

    async def _queued(self, endpoint: Endpoint) -> int:
        return await self.broker.depth(endpoint.queue) if endpoint.endpoint_type == "async" else 0

    async def _collect_compute(self) -> None:
        asks = [(rt.endpoint.id, w.worker_id, w.address) for rt in list(self.reconciler.runtimes.values())
                for w in rt.pool.workers if not w.broken]
        replies = await asyncio.gather(*(self._stats(address) for _, _, address in asks))
        seen = set()
        for (endpoint_id, worker_id, _), hist in zip(asks, replies, strict=True):
            if hist is not None:
                self._worker_compute[worker_id] = (endpoint_id, hist)
            seen.add(worker_id)
        for worker_id in [w for w in self._worker_compute if w not in seen]:  # gone: keep what it reported
            endpoint_id, hist = self._worker_compute.pop(worker_id)
            self._retired_compute.setdefault(endpoint_id, Histogram()).add(hist)
        totals: dict[str, Histogram] = {}
        for endpoint_id, retired in self._retired_compute.items():
            totals.setdefault(endpoint_id, Histogram()).add(retired)
        for endpoint_id, hist in self._worker_compute.values():
            totals.setdefault(endpoint_id, Histogram()).add(hist)
        for endpoint_id, total in totals.items():
            self.metrics.worker_compute(endpoint_id, total)

    async def _stats(self, address: str) -> Histogram | None:
        try:
            reply = await self.client.call(address, wire.STATS, b"", STATS_TIMEOUT)
            if reply.kind != wire.STATS:
                return None
            return Histogram.from_dict(orjson.loads(reply.body)["compute"])
        except Exception:  # a worker that is stopping or busy past the timeout: report it next time
            return None

    async def _batch_counts(self) -> dict[str, int]:
        async with self.db.connect() as conn:
            rows = await conn.execute(sa.select(batch_jobs.c.status, sa.func.count()).group_by(batch_jobs.c.status))
            return {row[0]: int(row[1]) for row in rows}

    # -- the dashboard's views ------------------------------------------------------------------------------
    async def overview(self, owner: str | None) -> dict[str, Any]:
        """Every endpoint of ``owner`` (all owners for None) with load and latency, batch jobs, failures."""
        await self.refresh()
        gauges = {g.endpoint_id: g for g in self.snapshot.endpoints}
        records = await self.endpoints.list(owner)
        counts = self._counts()
        return {
            "now": time.time(),
            "in_flight": self.metrics.inflight,
            "endpoints": [self._endpoint_row(e, gauges.get(e.id), counts) for e in records],
            "batch_jobs": await self.batch_jobs(owner),
            "failures": self.activity.recent_failures(owner, limit=20),
        }

    def _counts(self) -> dict[str, tuple[dict[str, int], Histogram]]:
        """Endpoint id -> (predictions and task attempts by outcome, prediction latencies), in one pass."""
        out: dict[str, tuple[dict[str, int], Histogram]] = {}
        for (route, endpoint_id, outcome), hist in list(self.metrics.requests.items()):
            if route in POLL_ROUTES:
                continue
            requests, latency = out.setdefault(endpoint_id, ({}, Histogram()))
            requests[outcome] = requests.get(outcome, 0) + hist.count
            latency.add(hist)
        for (endpoint_id, outcome), n in list(self.metrics.tasks.items()):
            out.setdefault(endpoint_id, ({}, Histogram()))[0][f"task_{outcome}"] = n
        return out

    def _endpoint_row(self, endpoint: Endpoint, gauges: EndpointGauges | None,
                      counts: dict[str, tuple[dict[str, int], Histogram]]) -> dict[str, Any]:
        s = endpoint.settings
        requests, latency = counts.get(endpoint.id, ({}, Histogram()))
        return {
            "id": endpoint.id, "owner": endpoint.owner, "name": endpoint.name, "type": endpoint.endpoint_type,
            "bundle": endpoint.bundle_name, "status": endpoint.status.value, "status_reason": endpoint.status_reason,
            "generation": endpoint.generation, "min_workers": s.min_workers, "max_workers": s.max_workers,
            "per_worker": s.per_worker, "workers": gauges.workers if gauges else worker_states(None),
            "desired_workers": gauges.desired_workers if gauges else None,
            "in_flight": gauges.inflight if gauges else 0, "queued": gauges.queued if gauges else 0,
            "requests": requests, "latency": quantiles(latency if latency.count else None),
            "queue_wait": quantiles(self.metrics.queue_wait.get(endpoint.id)),
            "compute": quantiles(self.metrics.compute.get(endpoint.id)),
        }

    async def endpoint(self, owner: str | None, endpoint_id: str) -> dict[str, Any] | None:
        """One endpoint in full: the overview row, status history, cold starts, failures, tasks, creation logs."""
        endpoint = await self.endpoints.get_by_id(endpoint_id)
        if endpoint is None or (owner is not None and endpoint.owner != owner):
            return None
        await self.refresh()
        gauges = {g.endpoint_id: g for g in self.snapshot.endpoints}
        return {
            **self._endpoint_row(endpoint, gauges.get(endpoint.id), self._counts()),
            "status_history": self.activity.status_history(endpoint.id),
            "cold_starts": self.activity.starts(endpoint.id),
            "failures": self.activity.recent_failures(None, endpoint.id, limit=20),
            "tasks": await self.tasks(endpoint.id) if endpoint.endpoint_type == "async" else [],
            "creation_logs": await asyncio.to_thread(self.reconciler.creation_logs, endpoint.id, 32 * 1024),
        }

    async def tasks(self, endpoint_id: str, limit: int = TASKS_SHOWN) -> list[dict[str, Any]]:
        """The newest tasks of an endpoint; unfinished ones with their place in the queue (1 = next)."""
        async with self.db.connect() as conn:
            rows = list(await conn.execute(
                sa.select(tasks.c.id, tasks.c.state, tasks.c.attempt, tasks.c.created_at, tasks.c.finished_at)
                .where(tasks.c.endpoint_id == endpoint_id).order_by(tasks.c.created_at.desc()).limit(limit)
            ))
            out = []
            for row in rows:
                position = None
                if row.state == "PENDING":
                    position = 1 + int((await conn.execute(
                        sa.select(sa.func.count()).select_from(tasks).where(
                            tasks.c.endpoint_id == endpoint_id, tasks.c.state == "PENDING",
                            tasks.c.created_at < row.created_at)
                    )).scalar_one())
                out.append({"task_id": row.id, "state": row.state, "attempts": row.attempt,
                            "created_at": row.created_at, "finished_at": row.finished_at,
                            "queue_position": position})
            return out

    async def batch_jobs(self, owner: str | None, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(batch_jobs).order_by(batch_jobs.c.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(batch_jobs.c.owner == owner)
        async with self.db.connect() as conn:
            rows = list(await conn.execute(query))
        return [{"id": r.id, "owner": r.owner, "bundle": r.bundle_name, "status": r.status, "total": r.total or 0,
                 "done": r.done, "failed": r.failed, "error": r.error, "created_at": r.created_at,
                 "started_at": r.started_at, "finished_at": r.finished_at} for r in rows]

    async def batch_job(self, owner: str | None, job_id: str, items: int = 100) -> dict[str, Any] | None:
        """A batch job's progress and its last ``items`` finished items (failures with their traceback)."""
        query = sa.select(batch_jobs).where(batch_jobs.c.id == job_id)
        if owner is not None:
            query = query.where(batch_jobs.c.owner == owner)
        async with self.db.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            states = {r[0]: int(r[1]) for r in await conn.execute(
                sa.select(batch_items.c.state, sa.func.count()).where(batch_items.c.job_id == job_id)
                .group_by(batch_items.c.state))}
            recent = list(await conn.execute(
                sa.select(batch_items.c.item_id, batch_items.c.position, batch_items.c.state,
                          batch_items.c.traceback)
                .where(batch_items.c.job_id == job_id, batch_items.c.state != "PENDING")
                .order_by(batch_items.c.position.desc()).limit(items)))
        return {
            "id": row.id, "owner": row.owner, "bundle": row.bundle_name, "status": row.status,
            "total": row.total or 0, "done": row.done, "failed": row.failed, "error": row.error,
            "created_at": row.created_at, "started_at": row.started_at, "finished_at": row.finished_at,
            "items_by_state": states,
            "items": [{"item_id": r.item_id, "position": r.position, "state": r.state,
                       "traceback": (r.traceback or "")[-4000:] or None} for r in recent],
        }
