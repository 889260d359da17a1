"""Notifications over Redis pub/sub: one channel, messages ``sender topic key``. A subscriber that lost its
connection reconnects and hands ``*`` to every handler (it may have missed changes meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict

import redis
import redis.asyncio as aioredis

from launch.stores.broker.redis import split_url
from launch.stores.changes import TOPICS, Handler

log = logging.getLogger("launch.changes")
CHANNEL = "changes"


class RedisChanges:
    def __init__(self, url: str) -> None:
        connection_url, namespace = split_url(url)
        self.url = url
        self.channel = f"{namespace}:{CHANNEL}"
        self.id = uuid.uuid4().hex
        self.handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(connection_url, decode_responses=True)
        self._outbox: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.handlers[topic].append(handler)

    def publish(self, topic: str, key: str) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(f"{self.id} {topic} {key}")

    async def start(self) -> None:
        self._outbox = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._listen(), name="changes-listen"),
                       asyncio.create_task(self._send(), name="changes-send")]
        with contextlib.suppress(TimeoutError):  # listen before serving: no change of the start-up is missed
            await asyncio.wait_for(self.subscribed.wait(), 10)

    async def _send(self) -> None:
        assert self._outbox is not None
        while True:
            first = await self._outbox.get()
            batch = [first]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
            except Exception:  # caches of the others still bound their age; the control loop still polls
                log.exception("could not publish %d change notifications", len(batch))
                await asyncio.sleep(0.5)

    async def _listen(self) -> None:
        first = True
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    if not first:
                        self._deliver_all()
                    first = False
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("change notifications: connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)

    def _deliver(self, data: str) -> None:
        sender, _, rest = data.partition(" ")
        topic, _, key = rest.partition(" ")
        if sender == self.id:
            return
        for handler in self.handlers.get(topic, ()):
            try:
                handler(key)
            except Exception:
                log.exception("change handler for %s failed", topic)

    def _deliver_all(self) -> None:
        for topic in TOPICS:
            self._deliver(f"- {topic} *")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.redis.aclose()


def publish_once(url: str, topic: str, key: str) -> None:
    connection_url, namespace = split_url(url)
    client = redis.Redis.from_url(connection_url)
    try:
        client.publish(f"{namespace}:{CHANNEL}", f"cli {topic} {key}")
    finally:
        client.close()
