"""In-process broker, living in the server's event loop: per queue, fair shares across groups (owners),
then priority within a group.

Consumers take the groups with waiting messages in turn (round-robin), so one owner's burst waits behind
its own messages, not in front of another owner's steady traffic; within a group the highest priority goes
first, FIFO among equals. Every operation is O(1) but ``position``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque


class _Group:
    __slots__ = ("levels", "size")

    def __init__(self) -> None:
        self.levels: dict[int, deque[str]] = {}
        self.size = 0

    def push(self, message: str, priority: int) -> None:
        level = self.levels.get(priority)
        if level is None:
            level = self.levels[priority] = deque()
        level.append(message)
        self.size += 1

    def pop(self) -> str:
        priority = max(self.levels) if len(self.levels) > 1 else next(iter(self.levels))
        level = self.levels[priority]
        message = level.popleft()
        if not level:
            del self.levels[priority]
        self.size -= 1
        return message

    def ahead_of(self, message: str, priority: int) -> int | None:
        """Messages of this group served before ``message``; None if it is not here."""
        level = self.levels.get(priority)
        if level is None:
            return None
        try:
            index = level.index(message)
        except ValueError:
            return None
        return index + sum(len(q) for p, q in self.levels.items() if p > priority)


class _Queue:
    __slots__ = ("groups", "size", "waiters", "where")

    def __init__(self) -> None:
        self.groups: OrderedDict[str, _Group] = OrderedDict()
        self.size = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.where: dict[str, tuple[str, int]] = {}  # message -> (group, priority), for ``position``

    def push(self, message: str, priority: int, group: str) -> None:
        entry = self.groups.get(group)
        if entry is None:
            entry = self.groups[group] = _Group()
        entry.push(message, priority)
        self.where[message] = (group, priority)
        self.size += 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def pop(self) -> str:
        group, entry = next(iter(self.groups.items()))
        message = entry.pop()
        if entry.size:
            self.groups.move_to_end(group)  # its turn is over: the next group with messages goes next
        else:
            del self.groups[group]
        self.size -= 1
        self.where.pop(message, None)
        return message


class EmbeddedBroker:
    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue()
        return q

    async def publish(self, queue: str, message: str, priority: int = 0, group: str = "") -> None:
        self._queue(queue).push(message, priority, group)

    async def consume(self, queue: str, timeout: float) -> str | None:
        q = self._queue(queue)
        if q.size:
            return q.pop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            waiter: asyncio.Future[None] = loop.create_future()
            q.waiters.append(waiter)
            timer = loop.call_later(remaining, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
            if q.size:
                return q.pop()
            if self._queues.get(queue) is not q:  # dropped meanwhile
                return None
        return None

    async def depth(self, queue: str) -> int:
        q = self._queues.get(queue)
        return q.size if q is not None else 0

    async def position(self, queue: str, message: str) -> int | None:
        q = self._queues.get(queue)
        where = q.where.get(message) if q is not None else None
        if q is None or where is None:
            return None
        group, priority = where
        own = q.groups[group].ahead_of(message, priority) if group in q.groups else None
        if own is None:
            return None
        # round-robin: each other group is served once per turn of this one (once more if its turn comes first)
        ahead, before = own, True
        for name, entry in q.groups.items():
            if name == group:
                before = False
            else:
                ahead += min(entry.size, own + 1 if before else own)
        return ahead

    async def drop(self, queue: str) -> None:
        q = self._queues.pop(queue, None)
        if q is not None:
            for waiter in q.waiters:
                _settle(waiter)

    async def close(self) -> None:
        for name in list(self._queues):
            await self.drop(name)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
