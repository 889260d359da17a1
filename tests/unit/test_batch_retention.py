"""Ended batch jobs go after the retention period, with their item rows and result objects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from launch.server.domain.batch_jobs import BatchJobs
from launch.stores.database import Database, migrate
from launch.stores.objects.local import LocalObjectStore
from launch.stores.schema import batch_items, batch_jobs

DAY = 86400.0


def _job(job_id: str, status: str, finished_at: float | None) -> dict[str, object]:
    return {"id": job_id, "owner": "alice", "bundle_id": "b" * 32, "bundle_name": "b", "status": status,
            "input_key": "uploads/alice/in.csv", "serialization_format": "json", "options": {}, "labels": {},
            "total": 1, "done": 1, "failed": 0, "result_key": f"batch-results/alice/{job_id}/results.json",
            "error": None, "created_at": 0.0, "started_at": 0.0, "finished_at": finished_at}


def test_old_ended_jobs_are_deleted_with_their_results(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)
    objects = LocalObjectStore(str(tmp_path / "objects"))

    async def scenario() -> None:
        db = Database(url)
        jobs = BatchJobs(db, None, objects, lambda key: key)  # type: ignore[arg-type]
        rows = [_job("old", "SUCCESS", 1.0), _job("recent", "SUCCESS", 9 * DAY), _job("running", "RUNNING", None)]

        def insert(conn: sa.Connection) -> None:
            conn.execute(batch_jobs.insert(), rows)
            conn.execute(batch_items.insert(), [
                {"job_id": row["id"], "item_id": "1", "position": 0, "request": {"args": {}}, "state": "SUCCESS",
                 "output": None, "output_key": f"batch-results/alice/{row['id']}/1.pkl", "traceback": None}
                for row in rows])

        await db.write(insert)
        for row in rows:
            await objects.put(f"batch-results/alice/{row['id']}/results.json", b"[]")
            await objects.put(f"batch-results/alice/{row['id']}/1.pkl", b"pickled")
        try:
            assert await jobs.sweep_retention(7 * DAY, now=10 * DAY) == 1
            async with db.connect() as conn:
                left = {r.id for r in await conn.execute(sa.select(batch_jobs.c.id))}
                items = {r.job_id for r in await conn.execute(sa.select(batch_items.c.job_id))}
            assert left == items == {"recent", "running"}
            assert not await objects.exists("batch-results/alice/old/results.json")
            assert not await objects.exists("batch-results/alice/old/1.pkl")
            assert await objects.exists("batch-results/alice/recent/1.pkl")
            assert await jobs.sweep_retention(7 * DAY, now=10 * DAY) == 0
        finally:
            await db.close()

    asyncio.run(scenario())
