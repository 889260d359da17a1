"""Task broker: a fast wake-up channel of task ids per endpoint queue.

The database is the system of record for tasks (state, attempts, leases); the broker only carries ids, so
a lost or duplicated message is repaired by the recovery sweep and by the claim's compare-and-set.
Engines: ``embedded://`` (in-process queues, rebuilt from the database at start-up); later Redis and
PostgreSQL.
"""

from __future__ import annotations

from typing import Protocol


class Broker(Protocol):
    async def publish(self, queue: str, message: str, priority: int = 0, group: str = "") -> None:
        """Queue ``message``: groups (owners) take turns, higher ``priority`` first within a group."""
        ...

    async def consume(self, queue: str, timeout: float) -> str | None:
        """The next message of ``queue``, or None after ``timeout`` seconds."""
        ...

    async def depth(self, queue: str) -> int: ...

    async def position(self, queue: str, message: str) -> int | None:
        """About how many messages will be consumed before ``message``; None if unknown here."""
        ...

    async def drop(self, queue: str) -> None:
        """Forget a queue and its messages (the endpoint was deleted)."""
        ...

    async def close(self) -> None: ...


def open_broker(url: str) -> Broker:
    """The broker engine for ``url``."""
    scheme = url.partition("://")[0]
    if scheme == "embedded":
        from launch.stores.broker.embedded import EmbeddedBroker

        return EmbeddedBroker()
    raise ValueError(f"unsupported broker scheme {scheme!r}; use embedded://")
