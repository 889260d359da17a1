"""The gateway's client for workers: one persistent, multiplexed ``launch.wire`` connection per worker,
one hop, no retries here (callers decide: the sync path tries another worker, the dispatcher re-queues)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import orjson

from launch import wire


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
        self.ids = itertools.count(1)

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        future = self.pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result((kind, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        error = WorkerUnreachable(f"connection to worker {self.address} lost: {exc!r}", sent=True)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

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
        where, token = wire.split_address(address)
        try:
            if where.startswith("unix:"):
                _, conn = await loop.create_unix_connection(lambda: _Connection(where, self.max_frame_bytes),
                                                            where[5:])
            else:
                host, _, port = where.removeprefix("tcp://").rpartition(":")
                _, conn = await loop.create_connection(lambda: _Connection(where, self.max_frame_bytes),
                                                       host, int(port))
        except OSError as exc:
            raise WorkerUnreachable(f"cannot connect to worker {where}: {exc}", sent=False) from exc
        if token is not None:
            conn.send(0, wire.HELLO, token)  # coalesced with, and always before, the first request
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


def _expire(future: asyncio.Future[tuple[int, bytes]], address: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"worker {address} did not answer within {timeout} s"))
