"""The request-head guard on uvicorn's httptools protocol, driven byte by byte without a network."""

from __future__ import annotations

from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from launch.server.api.http_guard import guarded_protocol

CAP = 1024


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakeLoop:
    """Time stands still unless a test moves it; requests are parsed but never run."""

    def __init__(self) -> None:
        self.now = 100.0
        self.started: list[dict[str, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> Any:
        return None

    def create_task(self, coro: Any) -> Any:
        self.started.append(coro.cr_frame.f_locals["self"].scope)
        coro.close()
        return _Done()


class _Done:
    def add_done_callback(self, _: Any) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


@pytest.fixture
def conn() -> Any:
    config = Config(_app, log_level="warning", ws="none")
    config.load()
    loop = FakeLoop()
    protocol = guarded_protocol(CAP, 10.0)(config=config, server_state=ServerState(), app_state={},
                                           _loop=loop)  # type: ignore[call-arg]
    protocol.connection_made(FakeTransport())
    return protocol


def head(header_bytes: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (header_bytes - len(start) - 4) + b"\r\n\r\n"


def refused(protocol: Any) -> bool:
    return protocol.transport.closed and protocol.transport.written.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("size", [100, CAP - 1, CAP])
def test_a_head_up_to_the_cap_is_served(conn: Any, size: int) -> None:
    conn.data_received(head(size))
    assert not conn.transport.closed and len(conn.loop.started) == 1


@pytest.mark.parametrize("size", [CAP + 1, 40 * CAP])
def test_a_head_over_the_cap_in_one_read_is_refused(conn: Any, size: int) -> None:
    conn.data_received(head(size))
    assert refused(conn) and conn.loop.started == []
    assert b'"detail":"request line and headers are over this server' in conn.transport.written


def test_a_head_over_the_cap_in_small_reads_is_refused(conn: Any) -> None:
    data = head(3 * CAP)
    for i in range(0, len(data), 100):
        conn.data_received(data[i:i + 100])
        if conn.transport.closed:
            break
    assert refused(conn) and conn.loop.started == []


def test_a_big_body_after_a_small_head_is_not_counted(conn: Any) -> None:
    body = b"x" * (50 * CAP)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                       + body[:10])
    conn.data_received(body[10:])
    assert not conn.transport.closed and conn.cycle.body == body


def test_keep_alive_requests_each_get_the_whole_cap(conn: Any) -> None:
    for _ in range(3):
        conn.data_received(head(CAP - 1))
        conn.cycle.response_complete = True
    assert not conn.transport.closed and len(conn.loop.started) == 3
    conn.data_received(head(CAP + 10))
    assert refused(conn)


def test_a_trickled_head_is_cut_after_the_timeout(conn: Any) -> None:
    conn.data_received(b"GET / HTTP/1.1\r\n")
    conn.loop.now += 5
    conn.data_received(b"X-A: b\r\n")
    conn._check_head_deadline(conn.loop.now)
    assert not conn.transport.closed
    conn.loop.now += 6
    conn._check_head_deadline(conn.loop.now)
    assert conn.transport.closed and conn.transport.written.startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_cut(conn: Any) -> None:
    conn.loop.now += 11
    conn._check_head_deadline(conn.loop.now)
    assert conn.transport.closed


def test_a_request_waiting_for_its_response_is_not_cut(conn: Any) -> None:
    conn.data_received(head(100))  # complete; the application takes its time
    conn.loop.now += 60
    conn._check_head_deadline(conn.loop.now)
    assert not conn.transport.closed
