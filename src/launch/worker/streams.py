"""Streams on the worker: run a predict function that yields, and send each item as a CHUNK frame as soon
as it is produced and the gateway's credit allows (``launch.flow_control``); then END, or STREAM_ERROR with
the traceback. CANCEL (the client went away) or a lost connection closes the generator, so its ``finally``
runs, and frees the slot.

A sync generator runs on a pool thread (``per_worker`` threads bound the concurrent streams), never on the
event loop: one that blocks between items — waiting on a model, a queue, a socket — cannot stall the
worker's other streams or its health checks. The thread encodes items itself and hands them to the loop in
batches, one wake-up per batch, so a cheap generator still streams at hundreds of thousands of items per
second. Async generators run on the loop. A predict function that returns a plain value streams it as one
item.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from launch import wire
from launch.flow_control import Balance
from launch.worker.runtime import Runtime

DEFAULT_SWITCH_INTERVAL = 0.005  # CPython's own
STREAM_SWITCH_INTERVAL = 0.0002


class Connection(Protocol):
    def send(self, request_id: int, kind: int, payload: bytes) -> None: ...


class ItemTooLarge(ValueError):
    """An item is larger than a frame may be."""


def encode(item: Any, count: int, limit: int) -> bytes:
    """One item as JSON (NumPy values included); anything else fails the stream with a clear traceback."""
    payload = orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(payload) > limit:
        raise ItemTooLarge(f"item {count} is {len(payload)} bytes as JSON, over this server's limit of {limit} "
                           "bytes (LAUNCH_MAX_RESULT_BYTES)")
    return payload


def _bounded_traceback(limit: int) -> str:
    text = traceback.format_exc()
    if len(text) > limit // 2:  # the gateway drops frames over the limit
        text = text[: limit // 4] + "\n...\n" + text[-(limit // 4):]
    return text


class _Pump:
    """A sync generator on a pool thread. The thread waits while the stream has no credit, encodes each item
    and appends it to ``buffer``; the event loop is woken once per batch to send what accumulated."""

    def __init__(self, credit: int, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[bytes]], None],
                 limit: int) -> None:
        self.cond = threading.Condition()
        self.credit = credit
        self.cancelled = False
        self.buffer: list[bytes] = []
        self.scheduled = False
        self.loop = loop
        self.deliver = deliver
        self.limit = limit

    def grant(self, nbytes: int) -> None:
        with self.cond:
            self.credit += nbytes
            self.cond.notify()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify()

    def flush(self) -> None:
        """On the loop: send what the thread produced since the last flush."""
        with self.cond:
            batch, self.buffer = self.buffer, []
            self.scheduled = False
        if batch:
            self.deliver(batch)

    def run(self, open_source: Callable[[], Any]) -> tuple[int, str | None]:
        """On a pool thread: (items produced, traceback if the predict function raised)."""
        source: Any = None
        count = 0
        try:
            output = open_source()
            source = output if inspect.isgenerator(output) else iter((output,))
            while True:
                with self.cond:
                    while self.credit <= 0 and not self.cancelled:
                        self.cond.wait()
                    if self.cancelled:
                        return count, None
                try:
                    item = next(source)
                except StopIteration:
                    return count, None
                payload = encode(item, count, self.limit)
                count += 1
                with self.cond:
                    self.credit -= len(payload)
                    self.buffer.append(payload)
                    wake, self.scheduled = not self.scheduled, True
                if wake:
                    self.loop.call_soon_threadsafe(self.flush)
                    if count == 1:
                        time.sleep(0)  # hand the interpreter to the event loop now: the first item leaves at once
                    # later items: the loop takes the interpreter within the switch interval and sends what
                    # accumulated by then in one batch (a hand-over per item would cost a wake-up per item)
        except Exception:
            return count, _bounded_traceback(self.limit)
        finally:
            if source is not None and hasattr(source, "close"):
                with contextlib.suppress(Exception):
                    source.close()  # here, on its own thread: its ``finally`` runs


class _Stream:
    """One running stream: its credit (a pump's, or the loop's for async generators) and its task."""

    def __init__(self, credit: int) -> None:
        self.balance = Balance(credit)
        self.pump: _Pump | None = None
        self.task: asyncio.Task[None] | None = None

    def grant(self, nbytes: int) -> None:
        self.balance.grant(nbytes)
        if self.pump is not None:
            self.pump.grant(nbytes)


class Streams:
    def __init__(self, runtime: Runtime, executor: concurrent.futures.ThreadPoolExecutor,
                 max_item_bytes: int = wire.MAX_PAYLOAD) -> None:
        self.runtime = runtime
        self.executor = executor
        self.max_item_bytes = max_item_bytes
        self._running: dict[tuple[Connection, int], _Stream] = {}
        self._threaded = 0  # streams whose generator runs on a thread

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

        run = self._run_async if self.runtime.is_async else self._run_threaded
        stream.task = asyncio.get_running_loop().create_task(run(conn, request_id, request, data, stream))
        stream.task.add_done_callback(finished)

    def control(self, conn: Connection, request_id: int, kind: int, payload: bytes) -> None:
        """A CREDIT or CANCEL frame for a stream (ignored once the stream has ended)."""
        stream = self._running.get((conn, request_id))
        if stream is None:
            return
        if kind == wire.CREDIT:
            stream.grant(wire.CREDIT_FORMAT.unpack(payload)[0])
        elif stream.task is not None:
            stream.task.cancel()

    def drop(self, conn: Connection) -> None:
        """The gateway's connection is gone: nobody reads these streams any more."""
        for (owner, _), stream in list(self._running.items()):
            if owner is conn and stream.task is not None:
                stream.task.cancel()

    def cancel_all(self) -> None:
        """The worker stops: end every stream now (a generator thread waiting for credit would otherwise keep
        the process alive)."""
        for stream in list(self._running.values()):
            if stream.pump is not None:
                stream.pump.cancel()
            if stream.task is not None:
                stream.task.cancel()

    def _finish(self, conn: Connection, request_id: int, count: int, failure: str | None) -> None:
        if failure is None:
            conn.send(request_id, wire.END, orjson.dumps({"items": count}))
        else:
            conn.send(request_id, wire.STREAM_ERROR, orjson.dumps({"traceback": failure}))

    async def _run_threaded(self, conn: Connection, request_id: int, request: dict[str, Any], data: bytes | None,
                            stream: _Stream) -> None:
        def deliver(batch: list[bytes]) -> None:
            for payload in batch:
                conn.send(request_id, wire.CHUNK, payload)

        pump = stream.pump = _Pump(stream.balance.credit, asyncio.get_running_loop(), deliver, self.max_item_bytes)
        self._threaded += 1
        if self._threaded == 1:
            # a generator thread hands items to the event loop: at the default 5 ms switch interval each
            # hand-over (the first item's above all) could wait up to 5 ms. Only while streams run: for
            # threaded predictions a short interval costs a quarter of the throughput in forced switches.
            sys.setswitchinterval(STREAM_SWITCH_INTERVAL)
        future = self.executor.submit(pump.run, lambda: self.runtime.open_stream(request, data))
        try:
            count, failure = await asyncio.wrap_future(future)
        except BaseException:
            pump.cancel()  # the thread stops before its next item and closes the generator
            raise
        finally:
            self._threaded -= 1
            if self._threaded == 0:
                sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)
        pump.flush()
        self._finish(conn, request_id, count, failure)

    async def _run_async(self, conn: Connection, request_id: int, request: dict[str, Any], data: bytes | None,
                         stream: _Stream) -> None:
        source: Any = None
        count = 0
        failure = None
        try:
            output = self.runtime.open_stream(request, data)
            if inspect.isawaitable(output):
                output = await output
            source = output if hasattr(output, "__anext__") else _one(output)
            items: AsyncIterator[Any] = source
            while True:
                await stream.balance.ready()
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
                payload = encode(item, count, self.max_item_bytes)
                conn.send(request_id, wire.CHUNK, payload)
                stream.balance.spend(len(payload))
                count += 1
        except Exception:
            failure = _bounded_traceback(self.max_item_bytes)
        finally:
            if source is not None and hasattr(source, "aclose"):
                with contextlib.suppress(Exception):
                    await source.aclose()  # its ``finally`` runs (also when the stream was cancelled)
        self._finish(conn, request_id, count, failure)


async def _one(value: Any) -> AsyncIterator[Any]:
    yield value
