"""Worker choice for the request path and the dispatcher: least busy, newest generation, spare capacity."""

from __future__ import annotations

import asyncio

from launch.server.control.pool import EndpointPool, Pools, WorkerRef


def worker(name: str, *, inflight: int = 0, generation: int = 1, capacity: int = 4,
           draining: bool = False) -> WorkerRef:
    return WorkerRef(name, f"http://127.0.0.1/{name}", generation, capacity, inflight, draining)


def pool(*workers: WorkerRef) -> EndpointPool:
    return EndpointPool("e1", workers=list(workers))


def test_empty_pool_picks_nothing() -> None:
    assert pool().pick() is None
    assert pool().pick_with_capacity() is None


def test_picks_the_least_busy() -> None:
    a, b, c = worker("a", inflight=3), worker("b", inflight=1), worker("c", inflight=2)
    assert pool(a, b, c).pick() is b


def test_ties_go_to_the_newest_generation() -> None:
    old, new = worker("old", inflight=1, generation=1), worker("new", inflight=1, generation=2)
    assert pool(old, new).pick() is new
    assert pool(new, old).pick() is new


def test_less_busy_old_generation_beats_busier_new_one() -> None:
    old, new = worker("old", inflight=0, generation=1), worker("new", inflight=1, generation=2)
    assert pool(old, new).pick() is old


def test_draining_workers_are_never_picked() -> None:
    idle_draining, busy = worker("d", inflight=0, draining=True), worker("b", inflight=9)
    assert pool(idle_draining, busy).pick() is busy
    assert pool(idle_draining).pick() is None
    assert pool(idle_draining, busy).serving == [busy]


def test_pick_with_capacity_refuses_full_workers() -> None:
    full = worker("f", inflight=4, capacity=4)
    assert pool(full).pick() is full
    assert pool(full).pick_with_capacity() is None
    spare = worker("s", inflight=3, capacity=4)
    assert pool(full, spare).pick_with_capacity() is spare


def test_pick_with_capacity_finds_the_worker_with_room_when_capacities_differ() -> None:
    # per_worker changes do not roll out new workers, so old and new workers can have different capacities
    small_full = worker("small", inflight=2, capacity=2)
    big_with_room = worker("big", inflight=3, capacity=10)
    assert pool(small_full, big_with_room).pick_with_capacity() is big_with_room


def test_inflight_counts_waiting_requests() -> None:
    p = pool(worker("a", inflight=2), worker("b", inflight=1))
    p.waiting = 4
    assert p.inflight == 7


def test_wait_for_returns_at_once_when_a_worker_serves() -> None:
    a = worker("a")

    async def scenario() -> WorkerRef | None:
        return await pool(a).wait_for(5.0)

    assert asyncio.run(asyncio.wait_for(scenario(), 1.0)) is a


def test_wait_for_times_out_with_none() -> None:
    async def scenario() -> WorkerRef | None:
        return await pool().wait_for(0.05)

    assert asyncio.run(asyncio.wait_for(scenario(), 2.0)) is None


def test_wait_for_wakes_when_a_worker_is_added() -> None:
    async def scenario() -> WorkerRef | None:
        p = pool()
        added = worker("late")

        async def add_later() -> None:
            await asyncio.sleep(0.02)
            p.workers.append(added)
            await p.notify()

        waiter = asyncio.create_task(p.wait_for(5.0))
        await add_later()
        got = await asyncio.wait_for(waiter, 1.0)
        assert got is added
        return got

    assert asyncio.run(scenario()) is not None


def test_wait_for_capacity_wakes_when_capacity_frees() -> None:
    async def scenario() -> WorkerRef | None:
        busy = worker("busy", inflight=1, capacity=1)
        p = pool(busy)
        waiter = asyncio.create_task(p.wait_for(5.0, need_capacity=True))
        await asyncio.sleep(0.02)
        assert not waiter.done()
        busy.inflight = 0
        await p.notify()
        return await asyncio.wait_for(waiter, 1.0)

    assert asyncio.run(scenario()) is not None


def test_pools_create_on_demand_and_drop() -> None:
    pools = Pools()
    first = pools.get("e1")
    assert pools.get("e1") is first
    pools.drop("e1")
    assert pools.get("e1") is not first
    pools.drop("never-existed")


def test_a_kept_slot_is_not_given_out() -> None:
    """The dispatcher keeps one slot of the worker it will hand its next message to: tasks started at
    submission never take it."""
    a = worker("a", inflight=0, capacity=1)
    assert pool(a).pick_with_capacity(keep=a) is None
    assert pool(a).pick_with_capacity() is a
    b = worker("b", inflight=1, capacity=3)
    assert pool(b).pick_with_capacity(keep=b) is b
    c = worker("c", inflight=0, capacity=2)
    assert pool(c, b).pick_with_capacity(keep=c) is b  # b's 2 spare slots beat c's 1 left
