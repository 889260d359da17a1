"""The worker's server: frames of ``launch.wire`` on one listening socket, predictions dispatched so that
cheap predict functions cost no thread hop and slow ones never block the event loop.

Scheduling: a call runs inline on the event loop while the moving average of the function's run time is
under ``INLINE_BELOW`` seconds; otherwise it runs on a thread pool of ``threads`` threads (``url`` inputs
arrive as bytes the gateway fetched: workers have no network of their own). ``async def`` predict functions
run on the loop.

Each prediction runs with its request or task id (``request_id`` in the PREDICT frame) set for the log
lines it prints, and its run time goes into a histogram the gateway reads with a STATS frame at scrape time
(nothing is added to the reply frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from launch import wire
from launch.histogram import Histogram
from launch.worker import logs
from launch.worker.runtime import Outcome, Runtime
from launch.worker.streams import Streams

INLINE_BELOW = 0.0002
_RUNS = frozenset({wire.PREDICT, wire.PREDICT_INPUT, wire.STREAM, wire.STREAM_INPUT})  # frames that run code


def outcome_frame(outcome: Outcome, max_result_bytes: int = wire.MAX_PAYLOAD) -> tuple[int, bytes]:
    """(frame kind, payload) for an outcome; a result over ``max_result_bytes`` becomes a failure that says so
    (the gateway would drop a larger frame, and must never hold one in memory)."""
    if outcome.pickled is not None:
        kind, payload = wire.RESULT_PICKLE, outcome.pickled
    elif outcome.ok:
        kind, payload = wire.RESULT_JSON, orjson.dumps({"status": "SUCCESS", "result": outcome.result})
    else:
        kind, payload = wire.RESULT_JSON, orjson.dumps({"status": "FAILURE", "traceback": outcome.traceback})
    if len(payload) > max_result_bytes:
        reason = (f"the result is {len(payload)} bytes, over this server's limit of {max_result_bytes} bytes "
                  "(LAUNCH_MAX_RESULT_BYTES); return less, or write large outputs elsewhere and return a reference")
        return wire.RESULT_JSON, orjson.dumps({"status": "FAILURE", "traceback": reason})
    return kind, payload


class WorkerServer:
    def __init__(self, runtime: Runtime, threads: int, max_result_bytes: int = wire.MAX_PAYLOAD) -> None:
        self.runtime = runtime
        self.max_result_bytes = max_result_bytes
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="predict")
        self.inflight = 0
        self.draining = False
        self.cost = 0.0  # moving average of predict run time, seconds; 0 until measured
        self.measured = False
        self.compute = Histogram()
        self.idle = asyncio.Event()
        self.idle.set()
        self.streams = Streams(runtime, self.executor, max_result_bytes)

    def protocol(self) -> WorkerProtocol:
        return WorkerProtocol(self)

    def _timed_run(self, request: dict[str, Any], data: bytes | None = None) -> Outcome:
        token = logs.request_id.set(request.get("request_id"))
        start = time.perf_counter()
        try:
            outcome = self.runtime.run(request, data)
            if not outcome.ok:
                print(f"prediction failed:\n{outcome.traceback}", file=sys.stderr, end="")
        finally:
            logs.request_id.reset(token)
        elapsed = time.perf_counter() - start
        self.cost = elapsed if not self.measured else 0.9 * self.cost + 0.1 * elapsed
        self.measured = True
        self.compute.observe(elapsed)  # a list increment: safe enough from the pool's threads for a metric
        return outcome

    def stats(self) -> bytes:
        """What the gateway's ``/metrics`` asks each worker for: its compute histogram and load."""
        return orjson.dumps({"compute": self.compute.to_dict(), "inflight": self.inflight})

    def handle(self, conn: WorkerProtocol, request_id: int, kind: int, payload: bytes) -> None:
        if kind == wire.PING:
            conn.send(request_id, wire.PONG, b"")
            return
        if kind in (wire.CREDIT, wire.CANCEL):
            self.streams.control(conn, request_id, kind, payload)
            return
        if kind == wire.STATS:
            conn.send(request_id, wire.STATS, self.stats())
            return
        if kind not in _RUNS or self.draining:
            reason = "worker is draining" if self.draining else f"unknown frame kind {kind}"
            conn.send(request_id, wire.REJECTED, orjson.dumps({"detail": reason}))
            return
        data = None
        try:
            if kind in (wire.PREDICT_INPUT, wire.STREAM_INPUT):
                payload, data = wire.unpack_input(payload)
            request = orjson.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
        except (ValueError, wire.FrameError) as exc:
            conn.send(request_id, wire.REJECTED, orjson.dumps({"detail": f"invalid request: {exc}"}))
            return
        self._begin()
        if kind in (wire.STREAM, wire.STREAM_INPUT):
            self.streams.start(conn, request_id, request, data, self._done)
        elif self.runtime.is_async:
            asyncio.get_running_loop().create_task(self._run_async(conn, request_id, request, data))
        elif self.measured and self.cost < INLINE_BELOW:
            self._finish(conn, request_id, self._timed_run(request, data))
        else:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self._timed_run, request, data)
            future.add_done_callback(lambda f: self._threaded_done(conn, request_id, f))

    async def _run_async(self, conn: WorkerProtocol, request_id: int, request: dict[str, Any],
                         data: bytes | None) -> None:
        logs.request_id.set(request.get("request_id"))  # this task's own context
        start = time.perf_counter()
        outcome = await self.runtime.run_async(request, data)
        self.compute.observe(time.perf_counter() - start)
        if not outcome.ok:
            print(f"prediction failed:\n{outcome.traceback}", file=sys.stderr, end="")
        self._finish(conn, request_id, outcome)

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
        kind, payload = outcome_frame(outcome, self.max_result_bytes)
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
        self.streams.cancel_all()
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
