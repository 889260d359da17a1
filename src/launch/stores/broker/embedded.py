"""In-process broker: one FIFO per queue, living in the server's event loop."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class EmbeddedBroker:
    def __init__(self) -> None:
        self._queues: defaultdict[str, asyncio.Queue[str]] = defaultdict(asyncio.Queue)

    async def publish(self, queue: str, message: str) -> None:
        self._queues[queue].put_nowait(message)

    async def consume(self, queue: str, timeout: float) -> str | None:
        q = self._queues[queue]
        if not q.empty():
            return q.get_nowait()
        try:
            return await asyncio.wait_for(q.get(), timeout)
        except TimeoutError:
            return None

    async def depth(self, queue: str) -> int:
        q = self._queues.get(queue)
        return q.qsize() if q is not None else 0

    async def drop(self, queue: str) -> None:
        self._queues.pop(queue, None)

    async def close(self) -> None:
        self._queues.clear()
