"""The server's logs: its own lines as text or JSON (``launch server --log-format json``), and the access log.

The access log never slows a request down: the request path appends a tuple to a list, and a background task
formats what has gathered once a second (on the event loop, in slices that let requests through: a
formatting thread would contend for the GIL with every request) and writes it in a thread, one write per
batch. If the writer falls far behind (a stuck disk), entries are dropped and counted instead of growing
memory or blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson

from launch.worker.logs import timestamp

FLUSH_SECONDS = 1.0  # one hand-over to the writer thread per second
MAX_PENDING = 100_000
SLICE = 500  # entries formatted between two yields to the event loop (about half a millisecond)
ROTATE_BYTES = 100 * 1024 * 1024  # an access log file past this is renamed to <name>.1 (one old file kept)

# one access log entry: (unix time, client, method, path, status, seconds, request id, owner, endpoint name)
Entry = tuple[float, str, str, str, int, float, str, str, str]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": timestamp(record.created), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure(level: str, log_format: str) -> None:
    """Set up the root logger for ``launch server``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


_second: list[Any] = [None, ""]  # (unix second, its ISO text): strftime once a second, not once a line


def _stamp(at: float) -> str:
    second = int(at)
    if _second[0] != second:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((at - second) * 1000):03d}Z"


def format_entry(entry: Entry, as_json: bool) -> str:
    at, client, method, path, status, seconds, request_id, owner, endpoint = entry
    if as_json:
        return orjson.dumps({"time": _stamp(at), "client": client, "method": method, "path": path,
                             "status": status, "duration_ms": round(seconds * 1000, 3), "request_id": request_id,
                             "owner": owner or None, "endpoint": endpoint or None}).decode()
    return (f'{_stamp(at)} {client} "{method} {_plain(path)}" {status} {seconds * 1000:.2f}ms '
            f"request_id={_plain(request_id) or '-'} owner={owner or '-'} endpoint={endpoint or '-'}")


def _plain(text: str) -> str:
    """Client-supplied text (paths, ids from paths) on one text line: no quotes, spaces or control characters."""
    if text.isprintable() and '"' not in text and " " not in text:
        return text
    return "".join(c if c.isprintable() and c not in '" ' else f"%{ord(c):02X}" for c in text)


class AccessLog:
    """Buffered access log written by a background task to ``target`` (a path, or ``-`` for stderr)."""

    def __init__(self, target: str, as_json: bool = False, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.target = target
        self.as_json = as_json
        self.rotate_bytes = rotate_bytes
        self.pending: list[Entry] = []
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._stream: IO[str] | None = None

    def record(self, entry: Entry) -> None:
        """The request path's only cost: one append (or a drop once the writer is far behind)."""
        if len(self.pending) < MAX_PENDING:
            self.pending.append(entry)
        else:
            self.dropped += 1

    def start(self) -> None:
        if self.target == "-":
            self._stream = sys.stderr
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.target, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._task = asyncio.create_task(self._run(), name="access-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
        self._stream = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # a full disk must not stop the server; the next flush tries again
                logging.getLogger("launch.access").exception("writing the access log failed")

    async def flush(self) -> None:
        if not self.pending or self._stream is None:
            return
        batch, self.pending = self.pending, []
        dropped, self.dropped = self.dropped, 0
        parts = []
        for start in range(0, len(batch), SLICE):
            parts.append("".join(format_entry(entry, self.as_json) + "\n" for entry in batch[start:start + SLICE]))
            await asyncio.sleep(0)
        if dropped:
            parts.append(f"{timestamp()} access log: {dropped} entries dropped (the writer fell behind)\n")
        await asyncio.to_thread(self._write, "".join(parts))

    def _write(self, text: str) -> None:
        assert self._stream is not None
        self._stream.write(text)
        self._stream.flush()
        if self._stream is not sys.stderr and self._stream.tell() > self.rotate_bytes:
            self._stream.close()
            Path(self.target).replace(self.target + ".1")
            self._stream = open(self.target, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
