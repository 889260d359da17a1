"""What the reconciler looks at on a pass (pure parts): live endpoints, the proof that a bundle loads, and
the dirty set that names changed endpoints."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from launch.server.control.pool import EndpointPool, WorkerRef
from launch.server.control.reconciler import EndpointRuntime, is_live, proof_key
from launch.server.domain.bundles import Bundles
from launch.server.domain.endpoint_cache import EndpointCache
from launch.server.domain.endpoint_states import EndpointStatus, Event
from launch.server.domain.endpoints import Endpoint, Endpoints, EndpointSettings
from launch.server.domain.errors import NotFound
from launch.stores.database import Database, migrate
from launch.stores.schema import bundles


def endpoint(status: EndpointStatus = EndpointStatus.READY, min_workers: int = 0, **settings: object) -> Endpoint:
    return Endpoint(
        id="e1", owner="alice", name="ep", endpoint_type="sync", bundle_id="b1", bundle_name="bundle",
        settings=EndpointSettings(min_workers=min_workers, **settings),  # type: ignore[arg-type]
        metadata={}, labels={}, status=status, status_reason=None, generation=1, created_at=0.0, updated_at=0.0,
        serving_generation=1 if status is EndpointStatus.READY else None,
    )


def runtime(ep: Endpoint) -> EndpointRuntime:
    return EndpointRuntime(ep, EndpointPool(ep.id))


def test_an_idle_ready_endpoint_scaled_to_zero_is_not_live() -> None:
    assert not is_live(runtime(endpoint()))


def test_a_failed_endpoint_without_workers_is_not_live() -> None:
    assert not is_live(runtime(endpoint(EndpointStatus.UPDATE_FAILED, min_workers=2)))


@pytest.mark.parametrize("status", [EndpointStatus.UPDATE_PENDING, EndpointStatus.UPDATE_IN_PROGRESS,
                                    EndpointStatus.DELETE_IN_PROGRESS])
def test_an_endpoint_on_its_way_somewhere_is_live(status: EndpointStatus) -> None:
    assert is_live(runtime(endpoint(status)))


def test_min_workers_keeps_an_endpoint_live() -> None:
    assert is_live(runtime(endpoint(min_workers=1)))


def test_a_generation_still_to_prove_keeps_an_endpoint_live() -> None:
    assert is_live(runtime(replace(endpoint(), generation=2)))  # READY, serving generation 1


def test_waiting_for_room_on_the_host_keeps_an_endpoint_live() -> None:
    rt = runtime(endpoint())
    rt.unplaced = "no memory left"
    assert is_live(rt)


def test_workers_starts_waiters_and_backoff_keep_an_endpoint_live() -> None:
    with_worker = runtime(endpoint())
    with_worker.pool.workers.append(WorkerRef("w", "unix:/x", 1, capacity=1))
    starting = runtime(endpoint())
    starting.starting["w"] = 1
    waiting = runtime(endpoint())
    waiting.pool.waiting = 1
    backoff = runtime(endpoint())
    backoff.failures = 1
    assert all(is_live(rt) for rt in (with_worker, starting, waiting, backoff))


def test_the_proof_is_the_bundle_under_its_resources_not_its_scaling() -> None:
    base = endpoint()
    assert proof_key(base) == proof_key(replace(base, id="e2", name="other",
                                                settings=replace(base.settings, max_workers=5, per_worker=3)))
    assert proof_key(base) != proof_key(replace(base, bundle_id="b2"))
    assert proof_key(base) != proof_key(replace(base, settings=replace(base.settings, memory="1Gi")))


def test_changes_name_their_endpoint_and_wake_the_reconciler() -> None:
    async def go() -> None:
        endpoints = Endpoints(db=None, bundles_service=None)  # type: ignore[arg-type]
        seen: list[str] = []
        endpoints.listeners.append(seen.append)
        endpoints._notify("e1")
        endpoints.wake("e2")  # demand, not a record change: listeners (caches) are not told
        assert endpoints.changed.is_set()
        assert endpoints.take_dirty() == {"e1", "e2"}
        assert endpoints.take_dirty() == set()
        assert seen == ["e1"]

    asyncio.run(go())


def test_the_endpoint_cache_drops_only_the_changed_endpoint() -> None:
    class Store:
        def __init__(self) -> None:
            self.listeners: list[object] = []
            self.reads = 0

        async def get(self, owner: str, name: str, for_inference: bool = False) -> Endpoint:
            self.reads += 1
            return replace(endpoint(), id=name, name=name)

    async def go() -> None:
        store = Store()
        cache = EndpointCache(store)  # type: ignore[arg-type]
        await cache.get("alice", "a")
        await cache.get("alice", "b")
        cache.invalidate("a")
        await cache.get("alice", "a")
        await cache.get("alice", "b")
        assert store.reads == 3

    asyncio.run(go())


def test_the_in_memory_view_lists_what_the_database_holds(tmp_path: Path) -> None:
    """Creates, edits, status changes and removals show in the list without a query, and ``stamps`` say
    which records changed."""
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)
    db = Database(url)

    async def go() -> None:
        await db.write(lambda conn: conn.execute(bundles.insert().values(
            id="b1", owner="alice", name="bundle", packaging_type="cloudpickle", location="x", metadata={},
            requirements=[], env_params={}, created_at=0.0)))
        store = Endpoints(db, Bundles(db, None), view=True)  # type: ignore[arg-type]
        assert await store.list() == []  # loads the (empty) view
        a = await store.create("alice", "a", "bundle", "sync", EndpointSettings(min_workers=0))
        b = await store.create("alice", "b", "bundle", "async", EndpointSettings(min_workers=0))
        await store.create("alice", "c", "bundle", "sync", EndpointSettings(min_workers=0, extra={"k": 1}))
        await store.edit("alice", "a", {"per_worker": 3})
        await store.set_status(b.id, Event.WORKER_READY, None)
        stamps_before = await store.stamps()
        listed = await store.list("alice")
        fresh = Endpoints(db, Bundles(db, None))  # type: ignore[arg-type]
        assert listed == await fresh.list("alice")
        assert [e.name for e in listed] == ["a", "b", "c"]
        assert listed[0].settings.per_worker == 3 and listed[1].status is EndpointStatus.READY
        assert (await store.get("alice", "b")) == (await store.get("alice", b.id)) == listed[1]
        for owner, ref in (("bob", "b"), ("bob", b.id), ("alice", "nope")):
            with pytest.raises(NotFound):
                await store.get(owner, ref)
        await store.remove(a.id)
        assert [e.name for e in await store.list()] == ["b", "c"]
        with pytest.raises(NotFound):
            await store.get("alice", "a")
        stamps = await store.stamps()
        assert b.id in stamps and a.id not in stamps and stamps[b.id] == stamps_before[b.id]
        await db.close()

    asyncio.run(go())
