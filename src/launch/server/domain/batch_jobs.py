"""Batch jobs: run a bundle over a file of inputs (the 0.3.3 client's CSV), item by item, resumably.

Every item's outcome is committed as it finishes, so a runner that dies resumes where it stopped without
recomputing finished items; the job ends with a JSON results file behind a signed URL.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from launch.server.domain import schemas
from launch.server.domain.bundles import Bundles
from launch.server.domain.errors import InvalidRequest, NotFound
from launch.server.domain.uploads import key_from_location
from launch.stores.database import Database
from launch.stores.objects import ObjectStore
from launch.stores.schema import batch_items, batch_jobs, bundles

SERIALIZATION_FORMATS = ("json", "pickle")
RESULTS_PREFIX = "batch-results"  # <owner>/<job>/: the results file and the items' pickled outputs
MAX_ITEMS = 100_000


class BatchStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


def parse_batch_csv(text: str, return_pickled: bool) -> list[tuple[str, dict[str, Any]]]:
    """(item id, prediction request) per row of an ``id,url`` or ``id,args`` file.

    The 0.3.3 client quotes ``args`` JSON with single quotes (``'{"a": 1, "b": 2}'``) and URLs with the
    usual double quotes.
    """
    header, _, body = text.lstrip("\ufeff").partition("\n")
    columns = [c.strip() for c in header.strip().split(",")]
    if columns not in (["id", "url"], ["id", "args"]):
        raise InvalidRequest("batch input must be a CSV with the header 'id,url' or 'id,args'")
    kind = columns[1]
    reader = csv.reader(io.StringIO(body), quotechar="'" if kind == "args" else '"')
    items: list[tuple[str, dict[str, Any]]] = []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 2:
            raise InvalidRequest(f"batch input line {number}: expected 2 columns, got {len(row)}")
        items.append((row[0], _item_request(kind, row[1], number, return_pickled)))
        if len(items) > MAX_ITEMS:
            raise InvalidRequest(f"batch input has more than {MAX_ITEMS} items")
    if not items:
        raise InvalidRequest("batch input has no items")
    if len({item_id for item_id, _ in items}) != len(items):
        raise InvalidRequest("batch input ids must be unique")
    return items


def _item_request(kind: str, value: str, number: int, return_pickled: bool) -> dict[str, Any]:
    if kind == "url":
        return {"url": value, "return_pickled": return_pickled}
    try:
        args = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"batch input line {number}: args is not JSON ({exc})") from None
    if not isinstance(args, dict):
        raise InvalidRequest(f"batch input line {number}: args must be a JSON object")
    return {"args": args, "return_pickled": return_pickled}


@dataclass(frozen=True)
class BatchJob:
    id: str
    owner: str
    bundle_id: str
    status: BatchStatus
    serialization_format: str
    options: dict[str, Any]
    labels: dict[str, Any]
    total: int
    done: int
    failed: int
    result_key: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    bundle_name: str = ""  # a record of the bundle it ran (the bundle may be deleted once the job ended)

    @property
    def duration(self) -> str | None:
        if self.started_at is None:
            return None
        end = self.finished_at or time.time()
        return f"{end - self.started_at:.3f}s"


def _row_to_job(row: Any) -> BatchJob:
    return BatchJob(
        id=row.id, owner=row.owner, bundle_id=row.bundle_id, status=BatchStatus(row.status),
        serialization_format=row.serialization_format, options=row.options or {}, labels=row.labels or {},
        total=row.total or 0, done=row.done, failed=row.failed, result_key=row.result_key, error=row.error,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        bundle_name=row.bundle_name,
    )


class BatchJobs:
    """Batch job records and their items. ``submitted`` is set whenever a job is created (wakes the runner);
    ``result_url`` turns an object key into a signed download URL."""

    def __init__(self, db: Database, bundles: Bundles, objects: ObjectStore, result_url: Any) -> None:
        self.db = db
        self.bundles = bundles
        self.objects = objects
        self.result_url = result_url
        self.listeners: list[Any] = []

    async def create(self, owner: str, *, bundle_name: str, input_location: str, serialization_format: str = "json",
                     options: dict[str, Any] | None = None, labels: dict[str, Any] | None = None) -> BatchJob:
        if serialization_format not in SERIALIZATION_FORMATS:
            raise InvalidRequest(f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)}")
        bundle = await self.bundles.get(owner, bundle_name)
        key = key_from_location(owner, input_location)
        if key is None:
            raise InvalidRequest(f"input {input_location!r} is not an upload of this server; use its upload URL")
        try:
            text = (await self.objects.get(key)).decode("utf-8")
        except KeyError:
            raise InvalidRequest(f"nothing was uploaded to {input_location!r}") from None
        except UnicodeDecodeError:
            raise InvalidRequest("batch input must be UTF-8 text") from None
        items = parse_batch_csv(text, return_pickled=serialization_format == "pickle")
        compiled = schemas.validator(bundle.request_schema)
        for number, (item_id, request) in enumerate(items, start=1):
            if compiled is not None and "args" in request:
                try:
                    schemas.validate_args(compiled, request["args"])
                except InvalidRequest as exc:
                    raise InvalidRequest(f"batch input item {item_id!r} (row {number}): {exc.detail}") from None
        job_id = uuid.uuid4().hex

        def insert(conn: sa.Connection) -> None:
            if conn.execute(sa.select(bundles.c.id).where(bundles.c.id == bundle.id)).first() is None:
                raise NotFound(f"no bundle named {bundle_name!r}")  # deleted meanwhile: nothing half-saved
            conn.execute(batch_jobs.insert().values(
                id=job_id, owner=owner, bundle_id=bundle.id, bundle_name=bundle.name,
                status=BatchStatus.PENDING.value, input_key=key,
                serialization_format=serialization_format, options=dict(options or {}), labels=dict(labels or {}),
                total=len(items), done=0, failed=0, created_at=time.time(),
            ))
            conn.execute(batch_items.insert(), [
                {"job_id": job_id, "item_id": item_id, "position": i, "request": request, "state": "PENDING"}
                for i, (item_id, request) in enumerate(items)
            ])

        await self.db.write(insert)
        for listener in self.listeners:
            listener(job_id)
        return await self.get(owner, job_id)

    async def get(self, owner: str, job_id: str) -> BatchJob:
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(batch_jobs).where(batch_jobs.c.id == job_id, batch_jobs.c.owner == owner)
            )).first()
        if row is None:
            raise NotFound(f"no batch job with id {job_id!r} (a job is deleted with its results once "
                           "the retention period after its end has passed)")
        return _row_to_job(row)

    async def view(self, owner: str, job_id: str) -> dict[str, Any]:
        job = await self.get(owner, job_id)
        return {
            "job_id": job.id, "status": job.status.value, "duration": job.duration, "bundle_name": job.bundle_name,
            "result": self.result_url(job.result_key) if job.result_key else None,
            "total": job.total, "done": job.done, "failed": job.failed, "error": job.error,
            "serialization_format": job.serialization_format, "labels": job.labels, "options": job.options,
        }

    # -- retention -----------------------------------------------------------------------------------------
    RETENTION_BATCH = 100

    async def sweep_retention(self, retention: float, now: float | None = None) -> int:
        """Delete jobs that ended more than ``retention`` seconds ago: their results file, their items'
        pickled outputs, their item rows and the job itself (a later poll is a 404 that says why). Returns how
        many jobs went."""
        cutoff = (time.time() if now is None else now) - retention
        async with self.db.connect() as conn:
            rows = (await conn.execute(
                sa.select(batch_jobs.c.id, batch_jobs.c.owner)
                .where(batch_jobs.c.status.in_([BatchStatus.SUCCESS.value, BatchStatus.FAILURE.value]),
                       batch_jobs.c.finished_at < cutoff)
                .limit(self.RETENTION_BATCH)
            )).all()
        for row in rows:  # objects first: a crash in between leaves a row to sweep again
            await self.objects.delete_prefix(f"{RESULTS_PREFIX}/{row.owner}/{row.id}/")
        ids = [row.id for row in rows]

        def delete(conn: sa.Connection) -> None:
            conn.execute(batch_items.delete().where(batch_items.c.job_id.in_(ids)))
            conn.execute(batch_jobs.delete().where(batch_jobs.c.id.in_(ids)))

        if ids:
            await self.db.write(delete)
        return len(ids)

    # -- used by the runner ----------------------------------------------------------------------------
    async def unfinished(self) -> list[BatchJob]:
        async with self.db.connect() as conn:
            rows = await conn.execute(sa.select(batch_jobs).where(
                batch_jobs.c.status.in_([BatchStatus.PENDING.value, BatchStatus.RUNNING.value])
            ).order_by(batch_jobs.c.created_at))
            return [_row_to_job(row) for row in rows]

    async def pending_items(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(batch_items.c.item_id, batch_items.c.request)
                .where(batch_items.c.job_id == job_id, batch_items.c.state == "PENDING")
                .order_by(batch_items.c.position)
            )
            return [(row.item_id, row.request) for row in rows]

    async def mark_running(self, job_id: str) -> None:
        def mark(conn: sa.Connection) -> None:
            conn.execute(batch_jobs.update().where(batch_jobs.c.id == job_id, batch_jobs.c.started_at.is_(None))
                         .values(started_at=time.time()))
            conn.execute(batch_jobs.update().where(batch_jobs.c.id == job_id).values(status=BatchStatus.RUNNING.value))

        await self.db.write(mark)

    async def record_item(self, job_id: str, item_id: str, *, ok: bool, output: str | None = None,
                          output_key: str | None = None, traceback: str | None = None) -> None:
        """Commit one item's outcome (once: a finished item is never overwritten)."""
        def record(conn: sa.Connection) -> None:
            updated = conn.execute(batch_items.update().where(
                batch_items.c.job_id == job_id, batch_items.c.item_id == item_id, batch_items.c.state == "PENDING"
            ).values(state="SUCCESS" if ok else "FAILURE", output=output, output_key=output_key,
                     traceback=traceback))
            if updated.rowcount:
                counter = batch_jobs.c.done if ok else batch_jobs.c.failed
                conn.execute(batch_jobs.update().where(batch_jobs.c.id == job_id).values({counter: counter + 1}))

        await self.db.write(record)

    async def finish(self, job: BatchJob, *, error: str | None = None) -> None:
        """Write the results file (id, status, result/result_url/traceback per item) and end the job."""
        result_key = None
        if error is None:
            result_key = f"{RESULTS_PREFIX}/{job.owner}/{job.id}/results.json"
            await self.objects.put(result_key, json.dumps(await self._results(job)).encode())
        statement = batch_jobs.update().where(batch_jobs.c.id == job.id).values(
            status=(BatchStatus.FAILURE if error else BatchStatus.SUCCESS).value, result_key=result_key,
            error=error, finished_at=time.time(),
        )
        await self.db.write(lambda conn: conn.execute(statement))

    async def _results(self, job: BatchJob) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(
                sa.select(batch_items).where(batch_items.c.job_id == job.id).order_by(batch_items.c.position)
            )).all()
        results = []
        for row in rows:
            entry: dict[str, Any] = {"id": row.item_id, "status": row.state}
            if row.state == "FAILURE":
                entry["traceback"] = row.traceback
            elif row.output_key:
                entry["result_url"] = self.result_url(row.output_key)
            else:
                entry["result"] = json.loads(row.output) if row.output is not None else None
            results.append(entry)
        return results
