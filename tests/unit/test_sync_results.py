"""Sync predictions' pickled results (no task row): records kept by the hour they were made, deleted an hour
after their last signed URL expired, on the local store (segment files) and on S3 (moto in-process)."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path
from typing import Any

import pytest

from launch.server.control.task_sweeper import TaskSweeper
from launch.server.domain.results import expired_hours, sync_results_prefix
from launch.stores.objects import ObjectStore, open_object_store
from launch.stores.objects import local as local_store
from launch.stores.objects.local import LocalObjectStore

T0 = calendar.timegm((2026, 12, 2, 10, 30, 0, 0, 0, 0))  # 10:30 UTC
HOUR = 3600.0


def test_results_go_under_the_hour_they_were_made() -> None:
    assert sync_results_prefix(T0) == "sync-results/2026120210/"


def test_an_hour_expires_when_all_of_it_is_before_the_cutoff() -> None:
    hours = ["2026120208", "2026120209", "2026120210", "not-an-hour", "20261202"]
    assert expired_hours(hours, calendar.timegm((2026, 12, 2, 10, 0, 0, 0, 0, 0))) == ["2026120208", "2026120209"]
    assert expired_hours(hours, calendar.timegm((2026, 12, 2, 9, 59, 59, 0, 0, 0))) == ["2026120208"]


class _Tasks:  # what TaskSweeper reads of the lifecycle at construction
    retention = 7 * 86400.0


def _sweep_scenario(store: ObjectStore) -> None:
    async def scenario() -> None:
        old = [await store.put_record(sync_results_prefix(T0 - 13 * HOUR), b"pickled %d" % i) for i in range(3)]
        recent = await store.put_record(sync_results_prefix(T0 - 11 * HOUR), b"recent")  # its 12 h URL is valid
        task_result = "results/alice/task-1.1.pkl"  # async results go with their task, not here
        await store.put(task_result, b"pickled")
        assert [await store.get(key) for key in old] == [b"pickled 0", b"pickled 1", b"pickled 2"]
        sweeper = TaskSweeper(_Tasks(), objects=store, result_ttl=12 * HOUR)  # type: ignore[arg-type]
        assert await sweeper.sweep_sync_results(now=T0) >= 1
        assert not any([await store.exists(key) for key in old])
        for key in old:
            with pytest.raises(KeyError):
                await store.get(key)
        assert await store.get(recent) == b"recent" and await store.exists(task_result)
        assert await store.children("sync-results/") == [recent.split("/")[1]]
        assert await sweeper.sweep_sync_results(now=T0) == 0
        again = await store.put_record(sync_results_prefix(T0 - 13 * HOUR), b"late")  # its folder was swept
        assert await store.get(again) == b"late"

    asyncio.run(scenario())


def test_sweep_on_the_local_store(tmp_path: Path) -> None:
    _sweep_scenario(LocalObjectStore(str(tmp_path)))


def test_sweep_on_s3(s3: Any) -> None:
    _sweep_scenario(open_object_store("s3://bucket/launch"))


def test_local_records_share_segments_survive_a_restart_and_refuse_forged_offsets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_store, "SEGMENT_MAX_BYTES", 64)
    monkeypatch.setattr(local_store, "OPEN_SEGMENTS", 2)

    async def scenario() -> None:
        store = LocalObjectStore(str(tmp_path))
        keys = [await store.put_record("sync-results/2026120210/", bytes([i]) * 20) for i in range(5)]
        big = await store.put_record("sync-results/2026120210/", b"b" * (local_store.RECORD_MAX_BYTES + 1))
        others = [await store.put_record(f"sync-results/20261202{h}/", b"x") for h in ("11", "12", "13")]
        segments = list((tmp_path / "sync-results" / "2026120210").glob("*.seg"))
        assert len(segments) == 2  # 20-byte records, 64-byte segments: three, then two
        reopened = LocalObjectStore(str(tmp_path))  # a restarted server reads what the last one wrote
        assert [await reopened.get(key) for key in keys] == [bytes([i]) * 20 for i in range(5)]
        assert await reopened.get(big) == b"b" * (local_store.RECORD_MAX_BYTES + 1)
        assert [await reopened.get(key) for key in others] == [b"x"] * 3
        await store.delete(keys[0])  # records go with their prefix, not one by one
        assert await store.get(keys[0]) == bytes([0]) * 20
        folder, _, name = keys[0].rpartition("/")
        segment = name.split("-")[0]
        for forged in (f"{folder}/{segment}-0-9999.rec", f"{folder}/{segment}-9999-1.rec",
                       f"{folder}/{'0' * 16}-0-1.rec"):
            assert not await store.exists(forged)
            with pytest.raises(KeyError):
                await store.get(forged)

    asyncio.run(scenario())


def test_prefixes_end_with_a_slash(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(store.delete_prefix("sync-results"))
    with pytest.raises(ValueError):
        asyncio.run(store.delete_prefix("../"))
    assert asyncio.run(store.children("nothing/")) == []


def test_a_failed_append_starts_a_new_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that failed half-way (disk full) must not shift the offsets of the records after it."""
    store = LocalObjectStore(str(tmp_path))
    prefix = "sync-results/2026120210/"
    first = asyncio.run(store.put_record(prefix, b"first"))
    write_all = local_store._write_all

    def half_then_fail(fd: int, data: bytes) -> None:
        write_all(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_store, "_write_all", half_then_fail)
    with pytest.raises(OSError):
        asyncio.run(store.put_record(prefix, b"0123456789"))
    monkeypatch.setattr(local_store, "_write_all", write_all)
    after = asyncio.run(store.put_record(prefix, b"after"))
    assert asyncio.run(store.get(first)) == b"first" and asyncio.run(store.get(after)) == b"after"
