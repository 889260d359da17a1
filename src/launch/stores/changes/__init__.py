"""Change notifications between the gateways of one deployment: "something under ``topic`` changed at
``key``", so that every gateway drops what it cached (API keys, endpoints, ready workers, task states) and the
control loop wakes.

Each gateway applies its own changes at once, in-process; notifications tell the *other* gateways (and a
subscriber never hears its own). A key of ``*`` means "anything under this topic" (sent after a subscriber
reconnects, when it may have missed some). Delivery is at-most-once and asynchronous: caches that must be
correct without it also bound their age. Engines: in-process (one gateway: nobody else to tell) and Redis
pub/sub, chosen with the broker (several gateways need a shared broker anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Handler = Callable[[str], None]

KEYS = "keys"  # key: "*" (created or revoked)
ENDPOINTS = "endpoints"  # key: endpoint id
WORKERS = "workers"  # key: endpoint id whose ready workers changed
TASKS = "tasks"  # key: task id that ended, or "*"
DEMAND = "demand"  # key: endpoint id a gateway waits for a worker of (scale from zero)
BATCH_JOBS = "batch_jobs"  # key: job id
TOPICS = (KEYS, ENDPOINTS, WORKERS, TASKS, DEMAND, BATCH_JOBS)


class Changes(Protocol):
    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(key)`` (on the event loop) when another gateway publishes under ``topic``."""
        ...

    def publish(self, topic: str, key: str) -> None:
        """Tell the other gateways; returns at once (sent in the background, in order)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def open_changes(broker_url: str) -> Changes:
    """The notification engine that goes with the broker at ``broker_url``."""
    scheme = broker_url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        from launch.stores.changes.redis import RedisChanges

        return RedisChanges(broker_url)
    from launch.stores.changes.local import LocalChanges

    return LocalChanges()


def publish_once(broker_url: str, topic: str, key: str) -> None:
    """Publish from a short-lived process (``launch api-keys revoke``): blocking, then done."""
    scheme = broker_url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        from launch.stores.changes.redis import publish_once as redis_publish_once

        redis_publish_once(broker_url, topic, key)
