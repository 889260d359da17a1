"""The gateway's client for workers: one persistent, multiplexed ``launch.wire`` connection per worker,
one hop, no retries here (callers decide: the sync path tries another worker, the dispatcher re-queues)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass

import orjson

from launch import wire
from launch.flow_control import CreditWindow


@dataclass(frozen=True)
class WorkerReply:
    kind: int
    body: bytes

    @property
    def pickled(self) -> bool:
        return self.kind == wire.RESULT_PICKLE

    @property
    def rejected(self) -> bool:
        """The worker did not run the request (it is draining, or the request was malformed)."""
        return self.kind == wire.REJECTED

    @property
    def detail(self) -> str:
        """The start of the body as text, for error messages."""
        return self.body[:300].decode("utf-8", "replace")

    def json_outcome(self) -> tuple[bool, str | None, str | None]:
        """(succeeded, result as a JSON string, traceback) of a JSON result frame. Workers run user code, so a
        frame that is not what the worker runtime sends is a failure, never an exception here."""
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("result"), str | None) or not isinstance(
                data.get("traceback"), str | None):
            return False, None, f"the worker sent a malformed result frame: {self.detail!r}"
        return data.get("status") == "SUCCESS", data.get("result"), data.get("traceback")


class StreamClosed(Exception):
    """The gateway closed the stream itself (its client went away): nothing more will arrive."""


class WorkerUnreachable(Exception):
    """The worker could not be reached (``sent`` False: the request never left) or dropped the connection
    while the request was in flight (``sent`` True: it may have run)."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _Connection(wire.FrameProtocol):
    def __init__(self, address: str, max_payload: int = wire.MAX_PAYLOAD) -> None:
        super().__init__(max_payload)  # a worker runs user code: a larger frame closes the connection
        self.address = address
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.streams: dict[int, WorkerStream] = {}
        self.ids = itertools.count(1)

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        future = self.pending.pop(request_id, None)
        if future is not None:
            if not future.done():
                future.set_result((kind, payload))
        elif (stream := self.streams.get(request_id)) is not None:
            stream.push(kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        error = WorkerUnreachable(f"connection to worker {self.address} lost: {exc!r}", sent=True)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        for stream in list(self.streams.values()):
            stream.lost(error)
        self.streams.clear()

    def call(self, kind: int, payload: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        request_id = next(self.ids) & 0xFFFFFFFF
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.send(request_id, kind, payload)
        return future

    def forget(self, future: asyncio.Future[tuple[int, bytes]]) -> None:
        for request_id, pending in list(self.pending.items()):
            if pending is future:
                del self.pending[request_id]

    def open_stream(self, kind: int, payload: bytes, window: int) -> WorkerStream:
        assert self.transport is not None
        request_id = next(self.ids) & 0xFFFFFFFF
        stream = self.streams[request_id] = WorkerStream(self, request_id, window)
        self.send(request_id, kind, payload)
        return stream


_ENDS = frozenset({wire.END, wire.STREAM_ERROR, wire.REJECTED})


class WorkerStream:
    """The gateway's end of one stream: the frames received and not yet taken (at most one credit window of
    chunks, plus the final frame), and the credit given back as the HTTP client takes them."""

    def __init__(self, conn: _Connection, request_id: int, window: int) -> None:
        self.conn = conn
        self.request_id = request_id
        self.credit = CreditWindow(window)
        self.frames: deque[tuple[int, bytes]] = deque()
        self.ended = False  # the worker sent its final frame (or the connection is gone, or we closed it)
        self._error: Exception | None = None
        self._arrived: asyncio.Future[None] | None = None

    def push(self, kind: int, payload: bytes) -> None:
        self.frames.append((kind, payload))
        if kind in _ENDS:
            self.ended = True
            self.conn.streams.pop(self.request_id, None)
        self._wake()

    def lost(self, error: WorkerUnreachable) -> None:
        self.ended = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        arrived = self._arrived
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    async def next_frames(self, timeout: float) -> list[tuple[int, bytes]]:
        """Every frame received since the last call, waiting up to ``timeout`` seconds for one; raises
        ``TimeoutError``, ``WorkerUnreachable`` once the connection is lost and its frames are taken, or
        ``StreamClosed`` once ``close`` was called."""
        if not self.frames:
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            self._arrived = arrived = loop.create_future()
            timer = loop.call_later(timeout, _settle, arrived)
            try:
                await arrived
            finally:
                timer.cancel()
                self._arrived = None
            if not self.frames:
                if self._error is not None:
                    raise self._error
                raise TimeoutError(f"worker {self.conn.address} sent nothing within {timeout:g} s")
        frames = list(self.frames)
        self.frames.clear()
        return frames

    def taken(self, nbytes: int) -> None:
        """The client took ``nbytes`` of chunks: give the worker that much credit back (in batches)."""
        grant = self.credit.consumed(nbytes)
        if grant and not self.ended:
            self.conn.send(self.request_id, wire.CREDIT, wire.CREDIT_FORMAT.pack(grant))

    def close(self) -> None:
        """Stop the stream; if the worker still runs it, tell it to close the generator. A reader waiting
        in ``next_frames`` gets ``StreamClosed``."""
        if not self.ended:
            self.ended = True
            self.conn.streams.pop(self.request_id, None)
            self.conn.send(self.request_id, wire.CANCEL, b"")
        if self._error is None:
            self._error = StreamClosed("the stream was closed")
        self.frames.clear()
        self._wake()


class WorkerClient:
    def __init__(self, max_frame_bytes: int = wire.MAX_PAYLOAD) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _connection(self, address: str) -> _Connection:
        conn = self._connections.get(address)
        if conn is not None and conn.open:
            return conn
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._connections.get(address)
            if conn is not None and conn.open:
                return conn
            conn = await self._connect(address)
            self._connections[address] = conn
            return conn

    async def _connect(self, address: str) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if address.startswith("unix:"):
                _, conn = await loop.create_unix_connection(lambda: _Connection(address, self.max_frame_bytes),
                                                            address[5:])
            else:
                host, _, port = address.removeprefix("tcp://").rpartition(":")
                _, conn = await loop.create_connection(lambda: _Connection(address, self.max_frame_bytes),
                                                       host, int(port))
        except OSError as exc:
            raise WorkerUnreachable(f"cannot connect to worker {address}: {exc}", sent=False) from exc
        return conn

    async def call(self, address: str, kind: int, payload: bytes, timeout: float) -> WorkerReply:
        """Send one frame and wait for its answer; ``TimeoutError`` after ``timeout`` seconds."""
        conn = self._connections.get(address)
        if conn is None or not conn.open:
            conn = await self._connection(address)
        future = conn.call(kind, payload)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future, address, timeout)
        try:
            reply_kind, body = await future
        except BaseException:
            conn.forget(future)
            raise
        finally:
            timer.cancel()
        return WorkerReply(reply_kind, body)

    async def predict(self, address: str, payload: bytes, timeout: float, kind: int = wire.PREDICT) -> WorkerReply:
        return await self.call(address, kind, payload, timeout)

    async def open_stream(self, address: str, kind: int, payload: bytes, window: int) -> WorkerStream:
        """Start a stream on a worker (a STREAM or STREAM_INPUT frame whose request grants ``window`` bytes of
        credit); its frames arrive on the returned ``WorkerStream``."""
        conn = self._connections.get(address)
        if conn is None or not conn.open:
            conn = await self._connection(address)
        return conn.open_stream(kind, payload, window)

    async def healthy(self, address: str, timeout: float = 2.0) -> bool:
        try:
            return (await self.call(address, wire.PING, b"", timeout)).kind == wire.PONG
        except (WorkerUnreachable, TimeoutError):
            return False

    def forget(self, address: str) -> None:
        """Drop the connection to a worker that was stopped."""
        conn = self._connections.pop(address, None)
        self._locks.pop(address, None)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def close(self) -> None:
        for address in list(self._connections):
            self.forget(address)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[tuple[int, bytes]], address: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"worker {address} did not answer within {timeout} s"))
