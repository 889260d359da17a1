"""The worker's server: frames of ``launch.wire`` on one listening socket, predictions dispatched so that
cheap predict functions cost no thread hop and slow ones never block the event loop.

Scheduling: a call runs inline on the event loop while the moving average of the function's run time is
under ``INLINE_BELOW`` seconds; otherwise (and for ``url`` inputs, which do network I/O) it runs on a thread
pool of ``threads`` threads. ``async def`` predict functions run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from launch import wire
from launch.worker.runtime import Outcome, Runtime
from launch.worker.streams import Streams

INLINE_BELOW = 0.0002


def outcome_frame(outcome: Outcome) -> tuple[int, bytes]:
    """(frame kind, payload) for an outcome."""
    if outcome.pickled is not None:
        return wire.RESULT_PICKLE, outcome.pickled
    if outcome.ok:
        return wire.RESULT_JSON, orjson.dumps({"status": "SUCCESS", "result": outcome.result})
    return wire.RESULT_JSON, orjson.dumps({"status": "FAILURE", "traceback": outcome.traceback})


class WorkerServer:
    def __init__(self, runtime: Runtime, threads: int) -> None:
        self.runtime = runtime
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="predict")
        self.inflight = 0
        self.draining = False
        self.cost = 0.0  # moving average of predict run time, seconds; 0 until measured
        self.measured = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.streams = Streams(runtime, self.executor)

    def protocol(self) -> WorkerProtocol:
        return WorkerProtocol(self)

    def _timed_run(self, request: dict[str, Any]) -> Outcome:
        start = time.perf_counter()
        outcome = self.runtime.run(request)
        elapsed = time.perf_counter() - start
        self.cost = elapsed if not self.measured else 0.9 * self.cost + 0.1 * elapsed
        self.measured = True
        return outcome

    def handle(self, conn: WorkerProtocol, request_id: int, kind: int, payload: bytes) -> None:
        if kind == wire.PING:
            conn.send(request_id, wire.PONG, b"")
            return
        if kind in (wire.CREDIT, wire.CANCEL):
            self.streams.control(conn, request_id, kind, payload)
            return
        if kind not in (wire.PREDICT, wire.STREAM) or self.draining:
            reason = "worker is draining" if self.draining else f"unknown frame kind {kind}"
            conn.send(request_id, wire.REJECTED, orjson.dumps({"detail": reason}))
            return
        try:
            request = orjson.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            conn.send(request_id, wire.REJECTED, orjson.dumps({"detail": f"invalid request: {exc}"}))
            return
        self._begin()
        if kind == wire.STREAM:
            self.streams.start(conn, request_id, request, self._done)
        elif self.runtime.is_async and not request.get("url"):
            asyncio.get_running_loop().create_task(self._run_async(conn, request_id, request))
        elif self.measured and self.cost < INLINE_BELOW and not request.get("url"):
            self._finish(conn, request_id, self._timed_run(request))
        else:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self._timed_run, request)
            future.add_done_callback(lambda f: self._threaded_done(conn, request_id, f))

    async def _run_async(self, conn: WorkerProtocol, request_id: int, request: dict[str, Any]) -> None:
        self._finish(conn, request_id, await self.runtime.run_async(request))

    def _threaded_done(self, conn: WorkerProtocol, request_id: int, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():  # the pool was shut down before the call started: it never ran
            conn.send(request_id, wire.REJECTED, b'{"detail": "worker stopped before running the request"}')
            self._done()
        else:
            self._finish(conn, request_id, future.result())

    def _begin(self) -> None:
        self.inflight += 1
        self.idle.clear()

    def _finish(self, conn: WorkerProtocol, request_id: int, outcome: Outcome) -> None:
        kind, payload = outcome_frame(outcome)
        conn.send(request_id, kind, payload)
        self._done()

    def _done(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()

    async def drain(self, timeout: float) -> None:
        """Stop taking work and wait (up to ``timeout``) for what is running to finish."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)
        self.executor.shutdown(wait=False, cancel_futures=True)


class WorkerProtocol(wire.FrameProtocol):
    def __init__(self, server: WorkerServer) -> None:
        super().__init__()
        self.server = server

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        self.server.handle(self, request_id, kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.streams.drop(self)  # nobody reads its streams any more: close their generators
