"""Scale-out seams: the control-loop lease on a real (temporary SQLite) database, mirrored ready workers,
in-process change notifications, the S3 object store (moto, in-process), bundle files for local workers, and
the Redis broker (against the Redis of ``scripts/engines start``; skipped without it)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from launch.server.control.directory import sync_pool
from launch.server.control.leadership import Leadership, hand_back, take_or_renew
from launch.server.control.pool import WorkerRef
from launch.stores.changes.local import Hub, LocalChanges
from launch.stores.database import Database, create_sync_engine, migrate
from launch.stores.objects import LocalFiles, open_object_store
from launch.stores.objects.local import LocalObjectStore
from launch.stores.placement.bundles import BundleFiles


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20.0))


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)
    return url


# -- the control-loop lease ------------------------------------------------------------------------------------


def test_one_holder_at_a_time_and_takeover_after_expiry(db_url: str) -> None:
    engine = create_sync_engine(db_url)
    with engine.begin() as conn:
        assert take_or_renew(conn, "a", now=100.0, term=5.0)
        assert not take_or_renew(conn, "b", now=101.0, term=5.0)  # a holds it until 105
        assert take_or_renew(conn, "a", now=104.0, term=5.0)  # renewed until 109
        assert not take_or_renew(conn, "b", now=108.9, term=5.0)
        assert take_or_renew(conn, "b", now=109.1, term=5.0)  # a died: b takes over
        assert not take_or_renew(conn, "a", now=110.0, term=5.0)  # a came back: it is not the holder
        hand_back(conn, "b")  # a clean stop hands over at once
        assert take_or_renew(conn, "a", now=110.5, term=5.0)
    engine.dispose()


def test_leadership_elects_one_and_fails_over_when_stopped(db_url: str) -> None:
    events: list[str] = []

    def recorder(name: str, what: str) -> Any:
        async def record() -> None:
            events.append(f"{name} {what}")
        return record

    async def scenario() -> None:
        db = Database(db_url)
        a = Leadership(db, "a", 0.9, on_elected=recorder("a", "elected"), on_deposed=recorder("a", "deposed"))
        b = Leadership(db, "b", 0.9, on_elected=recorder("b", "elected"), on_deposed=recorder("b", "deposed"))
        await a.start()
        await b.start()
        assert a.leading and not b.leading
        await a.stop()  # hands the lease back
        deadline = time.monotonic() + 5
        while not b.leading and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert b.leading
        await b.stop()
        await db.close()

    run(scenario())
    assert events == ["a elected", "a deposed", "b elected", "b deposed"]


def test_a_lone_gateway_always_leads_without_a_lease(db_url: str) -> None:
    elected: list[bool] = []

    async def on_elected() -> None:
        elected.append(True)

    async def nothing() -> None:
        return None

    async def scenario() -> None:
        db = Database(db_url)
        lone = Leadership(db, "x", 5.0, on_elected=on_elected, on_deposed=nothing, always=True)
        await lone.start()
        assert lone.leading
        await lone.stop()
        async with db.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM control_lease"))).scalar() == 0
        await db.close()

    run(scenario())
    assert elected == [True]


# -- mirrored ready workers --------------------------------------------------------------------------------------


def row(worker_id: str, address: str, capacity: int = 4, generation: int = 1) -> Any:
    return SimpleNamespace(worker_id=worker_id, address=address, capacity=capacity, generation=generation)


def test_sync_pool_keeps_known_workers_adds_new_and_drops_gone() -> None:
    kept = WorkerRef("w1", "unix:/a", 1, capacity=4, inflight=3)
    gone = WorkerRef("w2", "unix:/b", 1, capacity=4)
    result = sync_pool([kept, gone], [row("w1", "unix:/a", capacity=8), row("w3", "unix:/c")])
    assert [w.worker_id for w in result] == ["w1", "w3"]
    assert result[0] is kept and kept.inflight == 3 and kept.capacity == 8  # in-flight count stays this gateway's
    assert result[1].address == "unix:/c" and result[1].inflight == 0


def test_sync_pool_replaces_a_worker_whose_address_changed() -> None:
    old = WorkerRef("w1", "unix:/a", 1, capacity=4, broken=True)
    (new,) = sync_pool([old], [row("w1", "tcp://10.0.0.2:5000")])
    assert new is not old and new.usable and new.address == "tcp://10.0.0.2:5000"


# -- change notifications ----------------------------------------------------------------------------------------


def test_local_changes_reach_the_other_members_of_a_hub_only() -> None:
    heard: list[tuple[str, str]] = []

    async def scenario() -> None:
        hub = Hub()
        a, b, c = LocalChanges(hub), LocalChanges(hub), LocalChanges()
        def listener(name: str) -> Any:
            return lambda key: heard.append((name, key))

        for name, member in (("a", a), ("b", b), ("c", c)):
            member.subscribe("endpoints", listener(name))
        a.publish("endpoints", "e1")
        c.publish("endpoints", "e2")  # alone in its hub: nobody to tell
        await asyncio.sleep(0)
        await a.close()
        b.publish("endpoints", "e3")  # a left
        await asyncio.sleep(0)

    run(scenario())
    assert heard == [("b", "e1")]


# -- S3 objects (moto in-process) ---------------------------------------------------------------------------------


async def _chunks(parts: list[bytes], fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise RuntimeError("client went away")


def test_s3_store_round_trip_streams_and_presigns(s3: Any) -> None:
    store = open_object_store("s3://bucket/some/prefix")
    assert store.presigns and not isinstance(store, LocalFiles)

    async def scenario() -> None:
        await store.put("results/alice/1.pkl", b"one")
        assert await store.get("results/alice/1.pkl") == b"one"
        assert await store.exists("results/alice/1.pkl")
        big = [os.urandom(3 * 1024 * 1024) for _ in range(4)]  # 12 MiB: a multipart upload
        assert await store.put_stream("uploads/alice/b", _chunks(big)) == 12 * 1024 * 1024
        assert await store.get("uploads/alice/b") == b"".join(big)
        with pytest.raises(RuntimeError):
            await store.put_stream("uploads/alice/c", _chunks(big, fail=True))
        assert not await store.exists("uploads/alice/c")  # nothing of a failed stream is stored
        await store.delete("results/alice/1.pkl")
        assert not await store.exists("results/alice/1.pkl")
        with pytest.raises(KeyError):
            await store.get("results/alice/1.pkl")
        with pytest.raises(ValueError):
            await store.get("../escape")

    run(scenario())
    url = store.presigned_get("uploads/alice/b", 60)
    assert url is not None and "/some/prefix/uploads/alice/b" in url and "Signature" in url


def test_local_store_does_not_presign(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    assert not store.presigns and store.presigned_get("a", 60) is None and isinstance(store, LocalFiles)


def test_bundle_files_in_place_for_a_local_store_else_one_cached_download(tmp_path: Path, s3: Any) -> None:
    async def scenario() -> None:
        local = LocalObjectStore(str(tmp_path / "objects"))
        await local.put("uploads/alice/bundle", b"code")
        path = await BundleFiles(local, tmp_path / "cache").path("uploads/alice/bundle")
        assert path == local.local_path("uploads/alice/bundle")
        remote = open_object_store("s3://bucket/p")
        await remote.put("uploads/alice/bundle", b"remote code")
        files = BundleFiles(remote, tmp_path / "cache")
        first, second = await asyncio.gather(files.path("uploads/alice/bundle"), files.path("uploads/alice/bundle"))
        assert first == second and Path(first).read_bytes() == b"remote code"
        with pytest.raises(KeyError):
            await files.path("uploads/alice/missing")

    run(scenario())


# -- the Redis broker -------------------------------------------------------------------------------------------

redis_url = os.environ.get("LAUNCH_TEST_BROKER_URL")


@pytest.mark.skipif(not redis_url, reason="needs Redis: scripts/engines start; . .engines/env")
def test_redis_broker_takes_turns_between_owners_priority_first_and_wakes_consumers() -> None:
    from launch.stores.broker.redis import RedisBroker

    async def scenario() -> None:
        broker = RedisBroker(f"{redis_url}?namespace=unit{os.getpid()}")
        other = RedisBroker(f"{redis_url}?namespace=unit{os.getpid()}")  # another gateway
        await broker.drop("q")
        for i in range(3):
            await broker.publish("q", f"a{i}", group="alice")
        await broker.publish("q", "b0", group="bob")
        await broker.publish("q", "a9", priority=5, group="alice")
        await broker.publish("q", "b0", group="bob")  # already queued: not twice
        assert await broker.depth("q") == 5
        assert await broker.position("q", "b0") == 1
        assert [await other.consume("q", 0.1) for _ in range(6)] == ["a9", "b0", "a0", "a1", "a2", None]
        assert await broker.depth("q") == 0
        started = time.monotonic()
        waiting = asyncio.create_task(other.consume("q", 5.0))
        await asyncio.sleep(0.2)
        await broker.publish("q", "late")
        assert await waiting == "late" and time.monotonic() - started < 2.0
        await broker.publish("q", "dropped")
        await broker.drop("q")
        assert await broker.depth("q") == 0 and await other.consume("q", 0.05) is None
        await broker.close()
        await other.close()

    run(scenario())


@pytest.mark.skipif(not redis_url, reason="needs Redis: scripts/engines start; . .engines/env")
def test_redis_changes_reach_other_gateways_not_the_sender() -> None:
    from launch.stores.changes.redis import RedisChanges

    async def scenario() -> list[tuple[str, str]]:
        heard: list[tuple[str, str]] = []
        url = f"{redis_url}?namespace=unit{os.getpid()}"
        a, b = RedisChanges(url), RedisChanges(url)
        a.subscribe("keys", lambda key: heard.append(("a", key)))
        b.subscribe("keys", lambda key: heard.append(("b", key)))
        await a.start()
        await b.start()
        a.publish("keys", "*")
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        await a.close()
        await b.close()
        return heard

    assert run(scenario()) == [("b", "*")]


def test_nul_characters_in_an_async_request_are_found_anywhere() -> None:
    from launch.server.predictions import _holds_nul

    assert _holds_nul({"args": {"a\x00": 1}}) and _holds_nul({"args": {"a": ["x", {"b": "\x00"}]}})
    assert not _holds_nul({"args": {"a": "\\u0000", "b": [1, 2.5, None, True]}})
