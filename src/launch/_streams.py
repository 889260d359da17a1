"""Reading the server's streams in the SDK: a streaming endpoint's JSON lines, and server-sent events
(a task's state changes). Pure parsing, fed line by line by ``_transport``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
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


def items(lines: Iterator[str]) -> Iterator[Any]:
    """Items from JSON lines, in order; ``StreamError`` if the stream fails or is cut before its end."""
    for line in lines:
        if line:
            item = parse_item_line(line)
            if item is _END:
                return
            yield item
    raise StreamError("the connection closed before the stream ended", detail="stream cut")


async def aitems(lines: AsyncIterator[str]) -> AsyncIterator[Any]:
    """``items`` for asyncio."""
    async for line in lines:
        if line:
            item = parse_item_line(line)
            if item is _END:
                return
            yield item
    raise StreamError("the connection closed before the stream ended", detail="stream cut")


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


def events(lines: Iterator[str], parser: EventParser) -> Iterator[Event]:
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
