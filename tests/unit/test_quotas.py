"""Quotas: which endpoint settings and submits a server refuses, and that the refusal names the cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from launch.server.domain.endpoints import EndpointSettings
from launch.server.domain.errors import Conflict, InvalidRequest, TooManyRequests
from launch.server.domain.quotas import OwnerCounts, OwnerUsage, Quotas
from launch.server.domain.tasks import Tasks
from launch.stores.broker.embedded import EmbeddedBroker
from launch.stores.database import Database, migrate

QUOTAS = Quotas(max_workers_per_endpoint=32, max_workers_per_owner=40, max_endpoints_per_owner=3,
                max_queued_tasks_per_owner=5)


def workers(low: int, high: int) -> EndpointSettings:
    return EndpointSettings(cpus=1, memory="1Gi", min_workers=low, max_workers=high)


def others(*settings: EndpointSettings) -> OwnerUsage:
    return OwnerUsage(endpoints=len(settings), max_workers=sum(s.max_workers for s in settings))


def test_a_huge_max_workers_is_refused_naming_the_cap() -> None:
    with pytest.raises(InvalidRequest) as refused:
        QUOTAS.check_endpoint(workers(60, 10**9), others())
    assert refused.value.detail == ("max_workers 1000000000 is above this server's cap of 32 workers per "
                                    "endpoint (LAUNCH_MAX_WORKERS_PER_ENDPOINT)")
    with pytest.raises(InvalidRequest, match="cap of 32 workers per endpoint"):
        QUOTAS.check_endpoint(workers(60, 10**9), others(), previous=workers(1, 1))  # the same as an edit


def test_endpoints_per_owner_counts_the_others() -> None:
    QUOTAS.check_endpoint(workers(0, 1), others(*[workers(0, 1)] * 2))
    with pytest.raises(Conflict, match=r"you have 3 endpoints, this server's cap of 3 endpoints per owner "
                                        r"\(LAUNCH_MAX_ENDPOINTS_PER_OWNER\)"):
        QUOTAS.check_endpoint(workers(0, 1), others(*[workers(0, 1)] * 3))
    QUOTAS.check_endpoint(workers(0, 2), others(*[workers(0, 1)] * 3), previous=workers(0, 1))  # an edit adds none


def test_workers_per_owner_sums_max_workers() -> None:
    QUOTAS.check_endpoint(workers(0, 20), others(workers(0, 20)))
    with pytest.raises(Conflict, match=r"to 41 workers .* cap of 40 workers per owner "
                                        r"\(LAUNCH_MAX_WORKERS_PER_OWNER\)"):
        QUOTAS.check_endpoint(workers(0, 21), others(workers(0, 20)))


def test_edits_that_raise_nothing_pass_under_a_lowered_cap() -> None:
    old = workers(1, 50)  # created when the caps were higher
    QUOTAS.check_endpoint(EndpointSettings(cpus=2, memory="1Gi", min_workers=1, max_workers=50), others(old, old),
                          previous=old)
    with pytest.raises(InvalidRequest):
        QUOTAS.check_endpoint(workers(1, 51), others(), previous=old)


def test_queued_tasks_cap() -> None:
    QUOTAS.check_queued(4)
    with pytest.raises(TooManyRequests, match=r"you have 5 unfinished async tasks, this server's cap of 5 "
                                              r"queued tasks per owner \(LAUNCH_MAX_QUEUED_TASKS_PER_OWNER\)"):
        QUOTAS.check_queued(5)


def test_owner_counts() -> None:
    counts = OwnerCounts()
    counts.add("alice")
    counts.add("alice", 2)
    counts.add("bob")
    counts.remove("alice")
    assert (counts.get("alice"), counts.get("bob"), counts.get("carol")) == (2, 1, 0)
    counts.remove("bob", 5)  # never below zero
    assert counts.get("bob") == 0
    counts.reset({"carol": 4, "dave": 0})
    assert (counts.get("alice"), counts.get("carol"), counts.get("dave")) == (0, 4, 0)


def test_unfinished_tasks_are_counted_through_their_lifecycle(tmp_path: Path) -> None:
    """The per-owner count follows submit, finish and endpoint failure, and is rebuilt from the database."""
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)

    async def scenario() -> None:
        db = Database(url)
        tasks = Tasks(db, EmbeddedBroker(), max_attempts=3, lease_seconds=60)
        try:
            first = await tasks.submit("alice", "e1", "q1", {"args": {}})
            await tasks.submit("alice", "e2", "q2", {"args": {}})
            await tasks.submit("bob", "e1", "q1", {"args": {}})
            assert (tasks.unfinished.get("alice"), tasks.unfinished.get("bob")) == (2, 1)
            claimed = await tasks.claim(first)
            assert claimed is not None
            assert await tasks.finish(claimed, ok=True, result="1")
            assert not await tasks.finish(claimed, ok=True, result="1")  # fenced out: not counted twice
            assert tasks.unfinished.get("alice") == 1
            restarted = Tasks(db, EmbeddedBroker(), max_attempts=3, lease_seconds=60)
            await restarted.recover({"e1": "q1", "e2": "q2"})
            assert (restarted.unfinished.get("alice"), restarted.unfinished.get("bob")) == (1, 1)
            await tasks.fail_endpoint_tasks("e1", "deleted")
            assert (tasks.unfinished.get("alice"), tasks.unfinished.get("bob")) == (1, 0)
        finally:
            await db.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
