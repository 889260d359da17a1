"""Sync predictions' pickled results (no task row): kept by the hour they were made, deleted an hour after
their last signed URL expired, on the local store and on S3 (moto in-process)."""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch.server.control.task_sweeper import TaskSweeper
from launch.server.domain.results import expired_hours, sync_result_key
from launch.stores.objects import ObjectStore, open_object_store
from launch.stores.objects.local import LocalObjectStore

T0 = calendar.timegm((2026, 12, 2, 10, 30, 0, 0, 0, 0))  # 10:30 UTC
HOUR = 3600.0


def test_a_key_names_the_hour_it_was_made() -> None:
    key = sync_result_key("alice", T0)
    assert key.startswith("sync-results/2026120210/alice/") and key.endswith(".pkl")
    assert sync_result_key("alice", T0) != key


def test_an_hour_expires_when_all_of_it_is_before_the_cutoff() -> None:
    hours = ["2026120208", "2026120209", "2026120210", "not-an-hour", "20261202"]
    assert expired_hours(hours, calendar.timegm((2026, 12, 2, 10, 0, 0, 0, 0, 0))) == ["2026120208", "2026120209"]
    assert expired_hours(hours, calendar.timegm((2026, 12, 2, 9, 59, 59, 0, 0, 0))) == ["2026120208"]


class _Tasks:  # what TaskSweeper reads of the lifecycle at construction
    retention = 7 * 86400.0


def _sweep_scenario(store: ObjectStore) -> None:
    async def scenario() -> None:
        old = [sync_result_key(owner, T0 - 13 * HOUR) for owner in ("alice", "bob")]
        recent = sync_result_key("alice", T0 - 11 * HOUR)  # a 12 h URL made then is still valid
        task_result = "results/alice/task-1.1.pkl"  # async results go with their task, not here
        for key in (*old, recent, task_result):
            await store.put(key, b"pickled")
        sweeper = TaskSweeper(_Tasks(), objects=store, result_ttl=12 * HOUR)  # type: ignore[arg-type]
        assert await sweeper.sweep_sync_results(now=T0) == 2
        assert not any([await store.exists(key) for key in old])
        assert await store.exists(recent) and await store.exists(task_result)
        assert await store.children("sync-results/") == [recent.split("/")[1]]
        assert await sweeper.sweep_sync_results(now=T0) == 0

    asyncio.run(scenario())


def test_sweep_on_the_local_store(tmp_path: Path) -> None:
    _sweep_scenario(LocalObjectStore(str(tmp_path)))


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto = pytest.importorskip("moto")
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="bucket")
        yield


def test_sweep_on_s3(s3: Any) -> None:
    _sweep_scenario(open_object_store("s3://bucket/launch"))


def test_prefixes_end_with_a_slash(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(store.delete_prefix("sync-results"))
    with pytest.raises(ValueError):
        asyncio.run(store.delete_prefix("../"))
    assert asyncio.run(store.children("nothing/")) == []
