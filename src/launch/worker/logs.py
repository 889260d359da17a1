"""The worker's log lines: every line (the worker's own and whatever user code prints) starts with a UTC
timestamp and, while a prediction runs, the id of its request or task, so one request can be followed from the
gateway's access log into the worker's log (``launch endpoints logs NAME --since 5m``)."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import IO, Any

# the request or task id of the prediction running in this thread / coroutine (None between predictions)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("launch_request_id", default=None)


def timestamp(at: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds: sorts as text, parses with ``datetime.fromisoformat``."""
    at = time.time() if at is None else at
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def prefix_line(line: str, rid: str | None, at: float | None = None) -> str:
    return f"{timestamp(at)} [{rid}] {line}" if rid else f"{timestamp(at)} {line}"


class TimestampedStream:
    """A text stream that prefixes each complete line; partial lines wait for their end (or ``flush``)."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self._partial: dict[int, str] = {}  # per thread: a print's pieces arrive in several writes
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not text:
            return 0
        thread = threading.get_ident()
        rid = request_id.get()
        with self._lock:
            pending = self._partial.pop(thread, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[thread] = rest
            if lines:
                self.target.write("".join(prefix_line(line, rid) + "\n" for line in lines))
                self.target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            for thread, rest in list(self._partial.items()):
                self.target.write(prefix_line(rest, request_id.get()) + "\n")
                del self._partial[thread]
            self.target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer, ...: those of the real stream
        return getattr(self.target, name)
