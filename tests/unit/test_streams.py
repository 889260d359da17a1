"""Streams without processes: credit windows, the worker's stream runner (flow control, cancel, errors) with a
fake connection, the gateway's SSE / JSON-lines encoding, and the SDK's parsers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from launch import _streams, wire
from launch.errors import StreamError
from launch.flow_control import Balance, CreditWindow
from launch.server import streams as gateway
from launch.server.task_events import describe
from launch.worker.runtime import Runtime
from launch.worker.streams import Streams


def test_credit_returns_in_batches_of_half_a_window() -> None:
    window = CreditWindow(100)
    assert [window.consumed(20), window.consumed(20), window.consumed(20)] == [0, 0, 60]
    assert window.consumed(49) == 0 and window.consumed(1) == 50
    with pytest.raises(ValueError):
        CreditWindow(1)


def test_balance_waits_until_credit_is_granted() -> None:
    async def scenario() -> list[str]:
        balance = Balance(10)
        seen = []
        await balance.ready()
        balance.spend(12)
        waiter = asyncio.ensure_future(balance.ready())
        await asyncio.sleep(0.01)
        seen.append("waiting" if not waiter.done() else "ran")
        balance.grant(1)
        await asyncio.sleep(0.01)
        seen.append("waiting" if not waiter.done() else "ran")
        balance.grant(5)
        await asyncio.wait_for(waiter, 1)
        seen.append("ran")
        return seen

    assert asyncio.run(scenario()) == ["waiting", "waiting", "ran"]


class FakeConnection:
    def __init__(self) -> None:
        self.frames: list[tuple[int, int, bytes]] = []

    def send(self, request_id: int, kind: int, payload: bytes) -> None:
        self.frames.append((request_id, kind, payload))

    def kinds(self) -> list[int]:
        return [kind for _, kind, _ in self.frames]


def _runner(fn: Any) -> tuple[Streams, list[str]]:
    executor = concurrent.futures.ThreadPoolExecutor(2)
    return Streams(Runtime(fn), executor, max_item_bytes=1000), []


async def _until(predicate: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_worker_stream_runs_only_as_far_as_its_credit_then_resumes() -> None:
    produced: list[int] = []

    def count(n: int) -> Iterator[int]:
        for i in range(n):
            produced.append(i)
            yield i

    async def scenario() -> None:
        streams, _ = _runner(count)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 7, {"args": {"n": 100}, "credit": 3}, None, lambda: done.append(True))  # 3 bytes: 3 items
        await _until(lambda: len(conn.frames) == 3)
        await asyncio.sleep(0.05)
        assert len(produced) <= 4 and conn.kinds() == [wire.CHUNK] * 3  # stopped for credit
        streams.control(conn, 7, wire.CREDIT, wire.CREDIT_FORMAT.pack(1000))
        await _until(lambda: bool(done))
        assert [orjson.loads(p) for _, k, p in conn.frames if k == wire.CHUNK] == list(range(100))
        assert conn.frames[-1] == (7, wire.END, b'{"items":100}')

    asyncio.run(scenario())


def test_cancel_closes_the_generator_so_its_finally_runs() -> None:
    closed: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    async def scenario() -> None:
        streams, _ = _runner(endless)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 1, {"args": {}, "credit": 5}, None, lambda: done.append(True))
        await _until(lambda: len(conn.frames) >= 5)
        streams.control(conn, 1, wire.CANCEL, b"")
        await _until(lambda: bool(done) and bool(closed))
        assert wire.END not in conn.kinds()

    asyncio.run(scenario())


def test_a_lost_connection_closes_async_generators_too() -> None:
    closed: list[bool] = []

    async def ticks() -> AsyncIterator[int]:
        try:
            for i in range(1_000_000):
                await asyncio.sleep(0.001)
                yield i
        finally:
            closed.append(True)

    async def scenario() -> None:
        streams, _ = _runner(ticks)
        conn = FakeConnection()
        streams.start(conn, 1, {"args": {}, "credit": 1 << 20}, None, lambda: None)
        await _until(lambda: len(conn.frames) >= 3)
        streams.drop(conn)
        await _until(lambda: bool(closed))

    asyncio.run(scenario())


def test_an_exception_mid_stream_ends_it_with_the_traceback() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    async def scenario() -> FakeConnection:
        streams, _ = _runner(failing)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 2, {"args": {}, "credit": 100}, None, lambda: done.append(True))
        await _until(lambda: bool(done))
        return conn

    conn = asyncio.run(scenario())
    assert conn.kinds() == [wire.CHUNK, wire.STREAM_ERROR]
    assert "RuntimeError: mid-stream" in orjson.loads(conn.frames[1][2])["traceback"]


def test_a_plain_function_streams_its_value_as_one_item() -> None:
    async def scenario() -> FakeConnection:
        streams, _ = _runner(lambda x: {"y": x})
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 3, {"args": {"x": 2}, "credit": 100}, None, lambda: done.append(True))
        await _until(lambda: bool(done))
        return conn

    conn = asyncio.run(scenario())
    assert [(k, p) for _, k, p in conn.frames] == [(wire.CHUNK, b'{"y":2}'), (wire.END, b'{"items":1}')]


def test_an_item_over_the_size_limit_fails_the_stream_with_a_reason() -> None:
    async def scenario() -> FakeConnection:
        def big() -> Iterator[str]:
            yield "small"
            yield "x" * 5000

        streams, _ = _runner(big)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 4, {"args": {}, "credit": 100_000}, None, lambda: done.append(True))
        await _until(lambda: bool(done))
        return conn

    conn = asyncio.run(scenario())
    assert conn.kinds() == [wire.CHUNK, wire.STREAM_ERROR]
    assert "over this server's limit of 1000 bytes" in orjson.loads(conn.frames[1][2])["traceback"]


def test_a_url_input_arrives_as_bytes() -> None:
    def lengths(data: bytes) -> Iterator[int]:
        yield len(data)

    async def scenario() -> FakeConnection:
        streams, _ = _runner(lengths)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 5, {"credit": 100}, b"abc", lambda: done.append(True))
        await _until(lambda: bool(done))
        return conn

    assert [p for _, k, p in asyncio.run(scenario()).frames if k == wire.CHUNK] == [b"3"]


def test_sync_runtime_collects_a_generator_into_a_list() -> None:
    def gen(n: int) -> Iterator[int]:
        yield from range(n)

    async def agen(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    outcome = Runtime(gen).run({"args": {"n": 3}, "return_pickled": False})
    assert outcome.ok and json.loads(outcome.result or "") == [0, 1, 2]
    runtime = Runtime(agen)
    assert runtime.is_async
    outcome = asyncio.run(runtime.run_async({"args": {"n": 2}, "return_pickled": False}))
    assert outcome.ok and json.loads(outcome.result or "") == [0, 1]


def test_gateway_encodes_items_and_the_final_event() -> None:
    frames = [(wire.CHUNK, b'{"i":0}'), (wire.CHUNK, b'"a"'), (wire.END, b'{"items":2}')]
    expected = b'data: {"i":0}\n\ndata: "a"\n\nevent: end\ndata: {"status":"SUCCESS","items":2}\n\n'
    assert gateway.sse(frames) == (expected, 10, True)
    assert gateway.ndjson(frames[:2]) == (b'{"item":{"i":0}}\n{"item":"a"}\n', 10, False)
    error = gateway.ndjson([(wire.STREAM_ERROR, b'{"traceback":"tb"}')])
    assert error == (b'{"status":"FAILURE","traceback":"tb"}\n', 0, True)
    failed = b'event: error\ndata: {"status":"FAILURE","detail":"no item"}\n\n'
    assert gateway.sse(gateway.failure("no item"))[0] == failed


def test_format_choice() -> None:
    assert not gateway.wants_ndjson(None, None)
    assert not gateway.wants_ndjson("text/event-stream", None)
    assert gateway.wants_ndjson("application/x-ndjson", None)
    assert gateway.wants_ndjson("text/event-stream", "ndjson")
    assert not gateway.wants_ndjson("application/x-ndjson", "sse")


def test_sdk_parses_items_and_failures() -> None:
    def lines(*text: str) -> Iterator[str]:
        yield from text

    ended = '{"status": "SUCCESS", "items": 2}'
    assert list(_streams.items(lines('{"item": 1}', "", '{"item": [2]}', ended))) == [1, [2]]
    with pytest.raises(StreamError) as caught:
        list(_streams.items(lines('{"item": 1}', '{"status": "FAILURE", "traceback": "tb"}')))
    assert caught.value.traceback == "tb"
    with pytest.raises(StreamError, match="closed before the stream ended"):
        list(_streams.items(lines('{"item": 1}')))


def test_sdk_parses_server_sent_events() -> None:
    parser = _streams.EventParser()
    text = ["id: PENDING-0-1", "event: PENDING", 'data: {"a":', "data: 1}", "", ": keep-alive", "",
            "data: x", ""]
    found = [e for line in text if (e := parser.feed(line)) is not None]
    assert found == [_streams.Event("PENDING", "PENDING-0-1", '{"a":\n1}'),
                     _streams.Event("message", "PENDING-0-1", "x")]


def test_task_event_ids_follow_the_state() -> None:
    from launch.server.domain.tasks import Task, TaskState
    from launch.server.predictions import ResultLinks

    links = ResultLinks("http://x", b"k" * 32, 60)
    task = Task(id="t", owner="o", endpoint_id="e", state=TaskState.PENDING, request={}, attempt=0, max_attempts=3,
                result=None, result_key=None, traceback=None, created_at=0.0, finished_at=None)
    assert describe(task, links, 2) == ("PENDING", "PENDING-0-2", {"task_id": "t", "status": "PENDING",
                                                                   "queue_position": 2, "attempts": 0})
    running = Task(**{**task.__dict__, "state": TaskState.RUNNING, "attempt": 1})
    assert describe(running, links, None)[:2] == ("STARTED", "STARTED-1")
    done = Task(**{**task.__dict__, "state": TaskState.SUCCESS, "result": "3", "attempt": 1})
    name, event_id, data = describe(done, links, None)
    assert (name, event_id) == ("SUCCESS", "SUCCESS")
    assert data | {"task_id": "t", "status": "SUCCESS", "attempts": 1, "result": "3"} == data


def test_cancel_all_releases_a_generator_thread_waiting_for_credit() -> None:
    closed: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed.append(True)

    async def scenario() -> None:
        streams, _ = _runner(endless)
        conn = FakeConnection()
        streams.start(conn, 9, {"args": {}, "credit": 2}, None, lambda: None)  # two items, then it waits
        await _until(lambda: len(conn.frames) == 2)
        streams.cancel_all()
        await _until(lambda: bool(closed))

    asyncio.run(scenario())


def test_the_short_switch_interval_lasts_only_while_a_threaded_stream_runs() -> None:
    """A generator thread's hand-overs need the 0.2 ms interval; threaded predictions are faster at 5 ms."""
    from launch.worker.streams import DEFAULT_SWITCH_INTERVAL, STREAM_SWITCH_INTERVAL

    seen: list[float] = []

    def watch(n: int) -> Iterator[int]:
        for i in range(n):
            seen.append(sys.getswitchinterval())
            yield i

    async def scenario() -> None:
        streams, _ = _runner(watch)
        conn = FakeConnection()
        done: list[bool] = []
        streams.start(conn, 1, {"args": {"n": 3}, "credit": 100}, None, lambda: done.append(True))
        streams.start(conn, 2, {"args": {"n": 3}, "credit": 100}, None, lambda: done.append(True))
        await _until(lambda: len(done) == 2)

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)
        asyncio.run(scenario())
        assert seen and all(interval == pytest.approx(STREAM_SWITCH_INTERVAL) for interval in seen)
        assert sys.getswitchinterval() == pytest.approx(DEFAULT_SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(before)
