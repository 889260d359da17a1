"""Streams on the worker: run a predict function that yields, and send each item as a CHUNK frame as soon
as it is produced and the gateway's credit allows (``launch.flow_control``); then END, or STREAM_ERROR with
the traceback. CANCEL (the client went away) or a lost connection closes the generator, so its ``finally``
runs, and frees the slot.

Scheduling follows ``launch.worker.server``: ``next()`` of a sync generator runs inline on the event loop while
the moving average of its cost per item is under ``INLINE_BELOW`` seconds, else on the thread pool (so a slow
generator never blocks the loop, and a fast one costs no thread hop per item); async generators run on the
loop. A predict function that returns a plain value streams it as one item.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import orjson

from launch import wire
from launch.flow_control import Balance
from launch.worker.runtime import Runtime

INLINE_BELOW = 0.0002
YIELD_EVERY = 16  # inline items produced between two turns of the event loop (frames flush, others run)
_DONE = object()


class Connection(Protocol):
    def send(self, request_id: int, kind: int, payload: bytes) -> None: ...


def encode(item: Any) -> bytes:
    """One item as JSON (NumPy values included); anything else fails the stream with a clear traceback."""
    return orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY)


def _timed_next(iterator: Iterator[Any]) -> tuple[Any, float]:
    """The next item (``_DONE`` at the end: StopIteration cannot cross a future) and its cost in seconds."""
    start = time.perf_counter()
    try:
        item = next(iterator)
    except StopIteration:
        item = _DONE
    return item, time.perf_counter() - start


def _close_quietly(source: Any) -> None:
    with contextlib.suppress(Exception):
        source.close()


def _is_generator_function(fn: Any) -> bool:
    candidates = (fn, type(fn).__dict__.get("__call__"))
    return any(inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f) for f in candidates)


class _Stream:
    """One running stream: its credit, its task, and the thread call in flight (if any)."""

    def __init__(self, credit: int) -> None:
        self.balance = Balance(credit)
        self.task: asyncio.Task[None] | None = None
        self.in_thread: concurrent.futures.Future[tuple[Any, float]] | None = None


class Streams:
    def __init__(self, runtime: Runtime, executor: concurrent.futures.ThreadPoolExecutor,
                 max_item_bytes: int = wire.MAX_PAYLOAD) -> None:
        self.runtime = runtime
        self.executor = executor
        self.max_item_bytes = max_item_bytes
        self.item_cost = 0.0  # moving average of next() on sync generators, seconds
        self.measured = False
        # calling a generator function only creates the generator: cheap enough for the loop
        self.open_inline = runtime.is_async or _is_generator_function(runtime.predict_fn)
        self._running: dict[tuple[Connection, int], _Stream] = {}

    def start(self, conn: Connection, request_id: int, request: dict[str, Any], data: bytes | None,
              done: Callable[[], None]) -> None:
        """Run a stream; ``data``: the bytes of a ``url`` input (fetched by the gateway), else ``args``."""
        stream = _Stream(int(request.get("credit") or 1))
        key = (conn, request_id)
        self._running[key] = stream

        def finished(_: asyncio.Task[None]) -> None:
            if self._running.get(key) is stream:
                del self._running[key]
            done()

        stream.task = asyncio.get_running_loop().create_task(self._run(conn, request_id, request, data, stream))
        stream.task.add_done_callback(finished)

    def control(self, conn: Connection, request_id: int, kind: int, payload: bytes) -> None:
        """A CREDIT or CANCEL frame for a stream (ignored once the stream has ended)."""
        stream = self._running.get((conn, request_id))
        if stream is None:
            return
        if kind == wire.CREDIT:
            stream.balance.grant(wire.CREDIT_FORMAT.unpack(payload)[0])
        elif stream.task is not None:
            stream.task.cancel()

    def drop(self, conn: Connection) -> None:
        """The gateway's connection is gone: nobody reads these streams any more."""
        for (owner, _), stream in list(self._running.items()):
            if owner is conn and stream.task is not None:
                stream.task.cancel()

    async def _run(self, conn: Connection, request_id: int, request: dict[str, Any], data: bytes | None,
                   stream: _Stream) -> None:
        source: Any = None
        count = 0
        try:
            source = await self._open(request, data)
            if hasattr(source, "__anext__"):
                items: AsyncIterator[Any] = source
                while True:
                    await stream.balance.ready()
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    count = self._send(conn, request_id, item, stream, count)
            else:
                while True:
                    await stream.balance.ready()
                    item, inline = await self._next(source, stream)
                    if item is _DONE:
                        break
                    count = self._send(conn, request_id, item, stream, count)
                    if inline and (count == 1 or count % YIELD_EVERY == 0):
                        await asyncio.sleep(0)  # let the first item leave at once, and other streams run
            conn.send(request_id, wire.END, orjson.dumps({"items": count}))
        except Exception:
            text = traceback.format_exc()
            if len(text) > self.max_item_bytes // 2:  # the gateway drops frames over the limit
                text = text[: self.max_item_bytes // 4] + "\n...\n" + text[-self.max_item_bytes // 4:]
            conn.send(request_id, wire.STREAM_ERROR, orjson.dumps({"traceback": text}))
        finally:
            await self._close(source, stream)

    async def _open(self, request: dict[str, Any], data: bytes | None) -> Any:
        """The stream's source: an iterator of the predict function's items."""
        if self.open_inline:
            output = self.runtime.open_stream(request, data)
        else:  # a plain function does all its work when called: off the loop
            loop = asyncio.get_running_loop()
            output = await loop.run_in_executor(self.executor, self.runtime.open_stream, request, data)
        if inspect.isawaitable(output):
            output = await output
        if inspect.isgenerator(output) or hasattr(output, "__anext__"):
            return output
        return iter((output,))

    async def _next(self, iterator: Iterator[Any], stream: _Stream) -> tuple[Any, bool]:
        """(next item, whether it ran inline)."""
        if self.measured and self.item_cost < INLINE_BELOW:
            item, cost = _timed_next(iterator)
            inline = True
        else:
            stream.in_thread = self.executor.submit(_timed_next, iterator)
            item, cost = await asyncio.wrap_future(stream.in_thread)
            stream.in_thread = None
            inline = False
        self.item_cost = cost if not self.measured else 0.9 * self.item_cost + 0.1 * cost
        self.measured = True
        return item, inline

    def _send(self, conn: Connection, request_id: int, item: Any, stream: _Stream, count: int) -> int:
        payload = encode(item)
        if len(payload) > self.max_item_bytes:
            raise ValueError(f"item {count} is {len(payload)} bytes as JSON, over this server's limit of "
                             f"{self.max_item_bytes} bytes (LAUNCH_MAX_RESULT_BYTES)")
        conn.send(request_id, wire.CHUNK, payload)
        stream.balance.spend(len(payload))
        return count + 1

    async def _close(self, source: Any, stream: _Stream) -> None:
        """Close the generator so its ``finally`` runs; one busy in a thread is closed there when it returns."""
        if source is None:
            return
        if hasattr(source, "aclose"):
            with contextlib.suppress(Exception):
                await source.aclose()
            return
        if not hasattr(source, "close"):
            return
        running = stream.in_thread
        if running is not None and not running.done():
            running.add_done_callback(lambda _: _close_quietly(source))
        else:
            _close_quietly(source)
