"""Reading the server's streams in the SDK: a streaming endpoint's JSON lines, and server-sent events
(a task's state changes). Pure parsing, fed line by line by ``_transport``."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from launch.errors import StreamError

_END = object()


def parse_item_line(line: str) -> Any:
    """The item on one JSON line of ``/v1/streaming-tasks``, ``_END`` after the final line; raises
    ``StreamError`` when the stream failed."""
    data = json.loads(line)
    if "item" in data:
        return data["item"]
    if data.get("status") == "SUCCESS":
        return _END
    traceback, detail = data.get("traceback"), data.get("detail")
    raise StreamError(f"the stream failed:\n{traceback or detail}", traceback=traceback, detail=detail)


def items(lines: Generator[str, None, None]) -> Iterator[Any]:
    """Items from JSON lines, in order; ``StreamError`` if the stream fails or is cut before its end. The
    connection is closed here whatever happens (never later, by the garbage collector, inside another
    request on the same connection pool)."""
    try:
        for line in lines:
            if line:
                item = parse_item_line(line)
                if item is _END:
                    return
                yield item
        raise StreamError("the connection closed before the stream ended", detail="stream cut")
    finally:
        lines.close()


async def aitems(lines: AsyncGenerator[str, None]) -> AsyncIterator[Any]:
    """``items`` for asyncio."""
    try:
        async for line in lines:
            if line:
                item = parse_item_line(line)
                if item is _END:
                    return
                yield item
        raise StreamError("the connection closed before the stream ended", detail="stream cut")
    finally:
        await lines.aclose()


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: str


class EventParser:
    """Server-sent events, one line at a time (``data`` lines joined, ``id`` kept, comments skipped)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """The event that this (blank) line completes, if any."""
        if not line:
            if not self._data:
                self._name = None
                return None
            event = Event(self._name or "message", self.last_id, "\n".join(self._data))
            self._name, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value
        elif field == "id":
            self.last_id = value
        return None


def events(lines: Generator[str, None, None], parser: EventParser) -> Iterator[Event]:
    try:
        for line in lines:
            event = parser.feed(line)
            if event is not None:
                yield event
    finally:
        lines.close()
