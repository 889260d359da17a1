"""The local object store and the embedded broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch.stores.broker import open_broker
from launch.stores.broker.embedded import EmbeddedBroker
from launch.stores.objects import open_object_store
from launch.stores.objects.local import LocalObjectStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 5.0))


# -- LocalObjectStore -----------------------------------------------------------------------------------------


def test_put_get_exists_delete(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path / "objects"))

    async def scenario() -> None:
        await store.put("results/alice/1.pkl", b"one")
        assert await store.exists("results/alice/1.pkl")
        assert await store.get("results/alice/1.pkl") == b"one"
        await store.put("results/alice/1.pkl", b"two")  # overwrite
        assert await store.get("results/alice/1.pkl") == b"two"
        await store.delete("results/alice/1.pkl")
        assert not await store.exists("results/alice/1.pkl")
        with pytest.raises(KeyError):
            await store.get("results/alice/1.pkl")
        await store.delete("results/alice/1.pkl")  # deleting twice is fine

    run(scenario())


def test_fresh_keys_are_written_in_place_and_an_existing_one_is_replaced(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path / "objects"))

    async def scenario() -> None:
        await store.put("sync-results/2026120210/alice/a.pkl", b"one", fresh=True)  # its folder is new
        assert await store.get("sync-results/2026120210/alice/a.pkl") == b"one"
        await store.put("sync-results/2026120210/alice/a.pkl", b"two", fresh=True)  # not fresh after all
        assert await store.get("sync-results/2026120210/alice/a.pkl") == b"two"
        assert await store.delete_prefix("sync-results/2026120210/") == 1
        await store.put("sync-results/2026120210/alice/b.pkl", b"three", fresh=True)  # its folder was swept
        assert await store.get("sync-results/2026120210/alice/b.pkl") == b"three"
        names = [p.name for p in (tmp_path / "objects").rglob("*") if p.is_file()]
        assert names == ["b.pkl"]  # no temporary files

    run(scenario())


def test_large_objects_and_no_temp_files_left(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    data = bytes(range(256)) * 4096  # 1 MiB: written off the event loop

    async def scenario() -> None:
        await store.put("uploads/bob/bundles/big", data)
        assert await store.get("uploads/bob/bundles/big") == data

    run(scenario())
    assert [p.name for p in (tmp_path / "uploads" / "bob" / "bundles").iterdir()] == ["big"]
    assert store.local_path("uploads/bob/bundles/big") == str(tmp_path / "uploads" / "bob" / "bundles" / "big")


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "", "a/./b", ".", "..",
                                 "a/", "a\\..\\b", "a b", "results/alice/../bob/1.pkl", "a\x00b"])
def test_keys_that_could_escape_the_root_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(str(tmp_path / "objects"))

    async def scenario() -> None:
        for attempt in (store.put(key, b"x"), store.get(key), store.delete(key), store.exists(key)):
            with pytest.raises(ValueError, match="invalid object key"):
                await attempt
        with pytest.raises(ValueError):
            store.local_path(key)

    run(scenario())
    assert not (tmp_path / "escape").exists()


def test_open_object_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_object_store(f"file://{tmp_path}"), LocalObjectStore)
    with pytest.raises(ValueError, match="unsupported"):
        open_object_store("s4://bucket")


# -- EmbeddedBroker ---------------------------------------------------------------------------------------------


def test_fifo_per_queue_and_depth() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        for message in ("1", "2", "3"):
            await broker.publish("q", message)
        await broker.publish("other", "x")
        assert await broker.depth("q") == 3
        assert await broker.depth("other") == 1
        assert await broker.depth("never-used") == 0
        assert [await broker.consume("q", 0.1) for _ in range(3)] == ["1", "2", "3"]
        assert await broker.depth("q") == 0
        assert await broker.consume("other", 0.1) == "x"

    run(scenario())


def test_consume_times_out_with_none() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await broker.consume("empty", 0.05) is None
        assert loop.time() - started < 1.0

    run(scenario())


def test_consume_wakes_on_publish() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        waiter = asyncio.create_task(broker.consume("q", 5.0))
        await asyncio.sleep(0.01)
        await broker.publish("q", "late")
        assert await asyncio.wait_for(waiter, 1.0) == "late"

    run(scenario())


def test_drop_forgets_a_queue_and_close_forgets_all() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        await broker.publish("a", "1")
        await broker.publish("b", "2")
        await broker.drop("a")
        assert await broker.depth("a") == 0
        assert await broker.consume("a", 0.01) is None
        assert await broker.depth("b") == 1
        await broker.close()
        assert await broker.depth("b") == 0

    run(scenario())


def test_open_broker_by_url() -> None:
    assert isinstance(open_broker("embedded://"), EmbeddedBroker)
    with pytest.raises(ValueError, match="unsupported"):
        open_broker("rabbit://x")


def test_put_stream_stores_all_or_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))

    async def chunks(fail: bool) -> AsyncIterator[bytes]:
        yield b"abc"
        if fail:
            raise RuntimeError("client went away")
        yield b"def"

    async def scenario() -> None:
        assert await store.put_stream("uploads/a/ok", chunks(fail=False)) == 6
        assert await store.get("uploads/a/ok") == b"abcdef"
        with pytest.raises(RuntimeError):
            await store.put_stream("uploads/a/broken", chunks(fail=True))
        assert not await store.exists("uploads/a/broken")
        assert not [p for p in (tmp_path / "uploads" / "a").iterdir() if p.name.startswith(".tmp-")]

    asyncio.run(scenario())


def test_broker_priority_within_a_group_fifo_among_equals() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        for message, priority in (("low", 0), ("high", 5), ("low2", 0), ("higher", 9), ("high2", 5)):
            await broker.publish("q", message, priority, "alice")
        assert [await broker.consume("q", 0.1) for _ in range(5)] == ["higher", "high", "high2", "low", "low2"]

    run(scenario())


def test_broker_groups_take_turns() -> None:
    """A burst of one group (owner) does not starve another's steady traffic."""

    async def scenario() -> None:
        broker = EmbeddedBroker()
        for i in range(100):
            await broker.publish("q", f"a{i}", 0, "alice")
        await broker.publish("q", "b0", 0, "bob")
        first = [await broker.consume("q", 0.1) for _ in range(3)]
        assert "b0" in first
        await broker.publish("q", "b1", 0, "bob")
        assert "b1" in [await broker.consume("q", 0.1) for _ in range(2)]
        assert await broker.depth("q") == 100 - 3

    run(scenario())


def test_broker_position_follows_the_order() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        for i in range(5):
            await broker.publish("q", f"a{i}", 0, "alice")
        await broker.publish("q", "b0", 0, "bob")
        await broker.publish("q", "urgent", 3, "alice")
        assert await broker.position("q", "urgent") == 0
        assert await broker.position("q", "a0") == 2  # after urgent, and bob's turn
        assert await broker.position("q", "b0") == 1
        assert await broker.position("q", "unknown") is None
        assert await broker.position("other", "a0") is None
        order = [await broker.consume("q", 0.1) for _ in range(7)]
        assert order[:3] == ["urgent", "b0", "a0"]
        assert await broker.position("q", "a0") is None

    run(scenario())


def test_broker_wakes_one_waiter_per_message() -> None:
    async def scenario() -> None:
        broker = EmbeddedBroker()
        waiters = [asyncio.create_task(broker.consume("q", 2.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        await broker.publish("q", "m1")
        await broker.publish("q", "m2")
        done, pending = await asyncio.wait(waiters, timeout=0.2)
        assert sorted(t.result() for t in done) == ["m1", "m2"]
        await broker.drop("q")
        assert [await t for t in pending] == [None]

    run(scenario())
