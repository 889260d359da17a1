"""In-process notifications: gateways that are members of one ``Hub`` tell each other (one per process by
default, so a lone gateway tells nobody; tests put several in one hub)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from launch.stores.changes import Handler


class Hub:
    def __init__(self) -> None:
        self.members: list[LocalChanges] = []


class LocalChanges:
    def __init__(self, hub: Hub | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.hub = hub or Hub()
        self.hub.members.append(self)
        self.handlers: defaultdict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.handlers[topic].append(handler)

    def publish(self, topic: str, key: str) -> None:
        loop = asyncio.get_running_loop()
        for member in self.hub.members:
            if member is not self:
                for handler in member.handlers.get(topic, ()):
                    loop.call_soon(handler, key)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self in self.hub.members:
            self.hub.members.remove(self)
