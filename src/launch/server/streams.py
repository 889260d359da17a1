"""Streaming predictions: one slot on a worker of a ``streaming`` endpoint, the predict function's items
relayed to the HTTP client as they come, as server-sent events or JSON lines.

Nothing buffers the whole response: the worker runs at most one credit window ahead of what the client has
taken (``launch.flow_control``), and the gateway holds at most that window per stream. ``per_worker`` bounds
the concurrent streams of a worker (a request waits for a free slot, up to the sync timeout). The sync
timeout applies to the wait for each item, not to the whole stream. A client that goes away closes the
generator on the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from launch import wire
from launch.flow_control import DEFAULT_WINDOW
from launch.net_guard import FetchPolicy
from launch.server.control.pool import EndpointPool, Pools, WorkerRef
from launch.server.domain.endpoint_cache import EndpointCache
from launch.server.domain.endpoints import Endpoint, Endpoints
from launch.server.domain.errors import InvalidRequest, PredictionTimeout, TooManyRequests, Unavailable
from launch.server.inputs import prepare
from launch.server.predictions import _usable, parse_body
from launch.server.worker_client import StreamClosed, WorkerClient, WorkerStream, WorkerUnreachable

log = logging.getLogger("launch.streams")
Frames = list[tuple[int, bytes]]
Encoder = Callable[[Frames], tuple[bytes, int, bool]]
_background: set[asyncio.Task[None]] = set()  # fire-and-forget wake-ups, kept alive until done
SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"


def final_event(kind: int, payload: bytes) -> dict[str, Any]:
    """The last event of a stream: it ended (SUCCESS, with the item count) or failed (FAILURE, with the
    predict function's traceback, or a ``detail`` when the platform could not finish it)."""
    if kind == wire.END:
        return {"status": "SUCCESS", **orjson.loads(payload)}
    if kind == wire.STREAM_ERROR:
        return {"status": "FAILURE", **orjson.loads(payload)}
    detail = payload.decode("utf-8", "replace") if kind == -1 else orjson.loads(payload).get("detail")
    return {"status": "FAILURE", "detail": detail}


def failure(detail: str) -> Frames:
    """A platform failure as a final frame (kind -1), for the encoders."""
    return [(-1, detail.encode())]


def sse(frames: Frames) -> tuple[bytes, int, bool]:
    """Server-sent events: one ``data:`` event per item, then ``event: end`` or ``event: error``. Returns
    (bytes, item bytes relayed, whether the stream is over)."""
    parts: list[bytes] = []
    relayed = 0
    for kind, payload in frames:
        if kind != wire.CHUNK:
            name = b"end" if kind == wire.END else b"error"
            parts += (b"event: ", name, b"\ndata: ", orjson.dumps(final_event(kind, payload)), b"\n\n")
            return b"".join(parts), relayed, True
        parts += (b"data: ", payload, b"\n\n")
        relayed += len(payload)
    return b"".join(parts), relayed, False


def ndjson(frames: Frames) -> tuple[bytes, int, bool]:
    """JSON lines: ``{"item": ...}`` per item, then the final ``{"status": ...}`` line."""
    parts: list[bytes] = []
    relayed = 0
    for kind, payload in frames:
        if kind != wire.CHUNK:
            parts += (orjson.dumps(final_event(kind, payload)), b"\n")
            return b"".join(parts), relayed, True
        parts += (b'{"item":', payload, b"}\n")
        relayed += len(payload)
    return b"".join(parts), relayed, False


def wants_ndjson(accept: str | None, fmt: str | None) -> bool:
    """JSON lines when asked for (``format=ndjson`` or an Accept naming it), else server-sent events."""
    if fmt is not None:
        return fmt.lower() in ("ndjson", "jsonl", "jsonlines")
    return accept is not None and (NDJSON_TYPE in accept or "application/jsonl" in accept)


class OpenStream:
    """A stream that a worker has started (its first frames are in): holds one slot until closed."""

    def __init__(self, worker_stream: WorkerStream, first: Frames, worker: WorkerRef, pool: EndpointPool,
                 item_timeout: float, on_broken_worker: Callable[[], None]) -> None:
        self.worker_stream = worker_stream
        self.first = first
        self.worker = worker
        self.pool = pool
        self.item_timeout = item_timeout
        self.on_broken_worker = on_broken_worker
        self._closed = False

    async def body(self, encode: Encoder) -> AsyncIterator[bytes]:
        """The response body, one piece per batch of frames; credit goes back as each piece is taken."""
        frames = self.first
        try:
            while True:
                data, relayed, ended = encode(frames)
                yield data  # resumes once the server took the bytes (it waits while the client is slow)
                if ended:
                    return
                self.worker_stream.taken(relayed)
                try:
                    frames = await self.worker_stream.next_frames(self.item_timeout)
                except StreamClosed:  # the client went away
                    return
                except TimeoutError:
                    frames = failure(f"the predict function produced no item within {self.item_timeout:g} s")
                except WorkerUnreachable as exc:
                    log.warning("stream on worker %s: %s", self.worker.worker_id, exc)
                    self.worker.broken = True
                    self.on_broken_worker()
                    frames = failure(f"the worker failed during the stream: {exc}")
        finally:
            self.close()

    def close(self) -> None:
        """Free the slot (and stop the generator on the worker if it still runs); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.worker_stream.close()
        self.worker.inflight -= 1
        if self.pool.waiters:  # a request waits for a slot (close may run inside a cancelled scope: no await)
            task = asyncio.get_running_loop().create_task(self.pool.notify())
            _background.add(task)
            task.add_done_callback(_background.discard)


class Streams:
    def __init__(self, *, cache: EndpointCache, endpoints: Endpoints, pools: Pools, client: WorkerClient,
                 item_timeout: float, window: int = DEFAULT_WINDOW, fetch_policy: FetchPolicy | None = None) -> None:
        self.cache = cache
        self.endpoints = endpoints
        self.pools = pools
        self.client = client
        self.item_timeout = item_timeout
        self.window = window
        self.fetch_policy = fetch_policy or FetchPolicy()

    async def open(self, owner: str, endpoint_name: str, body: bytes) -> OpenStream:
        """Start a stream on a worker with a free slot, and wait for its first frames (so that errors before
        the stream starts are plain HTTP errors)."""
        endpoint = await self.cache.get(owner, endpoint_name)
        _usable(endpoint, "streaming")
        request = parse_body(body, endpoint)  # args checked against the bundle's request schema, if any
        request.pop("return_pickled", None)
        request.pop("pickle_protocol", None)
        request["credit"] = self.window
        prepared = await prepare(request, self.fetch_policy)  # a url input is fetched here, not by the worker
        if prepared.failure is not None:
            raise InvalidRequest(prepared.failure)
        kind = wire.STREAM_INPUT if prepared.kind == wire.PREDICT_INPUT else wire.STREAM
        pool = self.pools.get(endpoint.id)
        deadline = time.monotonic() + self.item_timeout
        for attempt in range(2):
            worker = pool.pick_with_capacity() or await self._wait_for_slot(pool, owner, endpoint, deadline)
            worker.inflight += 1
            can_retry = attempt == 0 and len(pool.serving) > 1
            opened = False
            try:
                worker_stream = await self.client.open_stream(worker.address, kind, prepared.payload, self.window)
                first = await worker_stream.next_frames(max(0.001, deadline - time.monotonic()))
                if first[0][0] != wire.REJECTED:
                    opened = True
                    return OpenStream(worker_stream, first, worker, pool, self.item_timeout,
                                      lambda: self.endpoints.wake(endpoint.id))
                worker.retiring = True  # it is stopping: it ran nothing
                self.endpoints.wake(endpoint.id)
                if not can_retry:
                    raise Unavailable(f"the worker serving {endpoint_name!r} refused the stream: "
                                      f"{final_event(*first[0]).get('detail')}")
            except WorkerUnreachable as exc:
                log.warning("stream on worker %s: %s", worker.worker_id, exc)
                worker.broken = True
                self.endpoints.wake(endpoint.id)
                if exc.sent or not can_retry:
                    raise Unavailable(f"the worker serving {endpoint_name!r} failed: {exc}") from None
            except TimeoutError:
                worker_stream.close()
                raise PredictionTimeout(f"the stream on {endpoint_name!r} produced nothing within "
                                        f"{self.item_timeout:g} s") from None
            finally:
                if not opened:
                    worker.inflight -= 1
        raise AssertionError("unreachable")

    async def _wait_for_slot(self, pool: EndpointPool, owner: str, endpoint: Endpoint, deadline: float) -> WorkerRef:
        """Wait for a worker with a free slot (scale from zero, start-up, or other streams ending)."""
        pool.waiting += 1
        self.endpoints.wake(endpoint.id)  # wake the reconciler: demand beyond the current workers
        worker = None
        try:
            while worker is None and (remaining := deadline - time.monotonic()) > 0:
                worker = await pool.wait_for(min(1.0, remaining), need_capacity=True)
                if worker is None:
                    endpoint = await self.cache.get(owner, endpoint.name)
                    _usable(endpoint, "streaming")
        finally:
            pool.waiting -= 1
        if worker is not None:
            return worker
        if pool.serving:
            slots = sum(w.capacity for w in pool.serving)
            raise TooManyRequests(f"all {slots} stream slots of {endpoint.name!r} stayed busy for "
                                  f"{self.item_timeout:g} s; retry later")
        raise Unavailable(f"no worker of endpoint {endpoint.name!r} became ready within {self.item_timeout:g} s "
                          f"(status {endpoint.status.value})")
