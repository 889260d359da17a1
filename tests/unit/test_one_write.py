"""``send_whole``: a response in one write gives the same bytes as uvicorn's two ASGI sends, on a real uvicorn
server (keep-alive, pipelining, ``connection: close``, HTTP/1.0), and steps aside where it must (HEAD,
middleware wrapping ``send``, a response already started)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from launch.server.api.one_write import send_whole

HEADERS = [(b"content-type", b"application/json"), (b"x-request-id", b"abc-1")]
BODY = b'{"status":"SUCCESS","result":1}'
used: list[bool] = []  # what send_whole answered, per request of the "whole" app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status = 404 if scope["path"].endswith("/missing") else 200
    if scope["path"].startswith("/whole"):
        taken = send_whole(send, status, HEADERS, BODY)
        used.append(taken)
        if taken:
            return
    elif scope["path"].startswith("/wrapped"):
        async def wrapper(message: dict[str, Any]) -> None:
            await send(message)

        taken = send_whole(wrapper, status, HEADERS, BODY)
        used.append(taken)
        assert not taken
    await send({"type": "http.response.start", "status": status,
                "headers": [*HEADERS, (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http="httptools", loop="asyncio", log_level="warning", access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def exchange(port: int, data: bytes) -> tuple[bytes, bool]:
    """Send ``data``; everything the server answered until it closed or went quiet, and whether it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.settimeout(0.5)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk


def request(path: str, method: str = "GET", version: str = "1.1", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nhost: x\r\n{extra}\r\n".encode()


def undated(raw: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"", raw)


@pytest.mark.parametrize("path", ["/", "/missing"])
def test_the_same_bytes_as_two_asgi_sends(port: int, path: str) -> None:
    used.clear()
    whole, whole_closed = exchange(port, request("/whole" + path))
    asgi, asgi_closed = exchange(port, request("/asgi" + path))
    assert used == [True]
    assert undated(whole) == undated(asgi)
    assert whole.endswith(BODY) and (b" 404 " in whole) == (path == "/missing")
    assert not whole_closed and not asgi_closed  # kept alive


def test_pipelined_requests_are_answered_in_order_and_close_is_honoured(port: int) -> None:
    used.clear()
    data = request("/whole/1") + request("/whole/2") + request("/whole/3", extra="connection: close\r\n")
    whole, closed = exchange(port, data)
    asgi, _ = exchange(port, data.replace(b"/whole", b"/asgi"))
    assert used == [True, True, True]
    assert whole.count(b"HTTP/1.1 200 OK") == 3 and whole.count(b"connection: close") == 1
    assert closed
    assert undated(whole) == undated(asgi)


def test_http_1_0_closes_after_the_answer(port: int) -> None:
    whole, closed = exchange(port, request("/whole", version="1.0"))
    asgi, _ = exchange(port, request("/asgi", version="1.0"))
    assert closed and whole.endswith(BODY)
    assert undated(whole) == undated(asgi)


def test_head_and_wrapped_send_go_through_asgi(port: int) -> None:
    used.clear()
    head, _ = exchange(port, request("/whole", method="HEAD"))
    assert used == [False]
    assert head.startswith(b"HTTP/1.1 200 OK") and not head.endswith(BODY)  # uvicorn drops a HEAD's body
    wrapped, _ = exchange(port, request("/wrapped"))
    assert used == [False, False] and wrapped.endswith(BODY)


def test_only_uvicorns_own_cycle_is_written_to() -> None:
    class Cycle:  # not uvicorn's: send_whole steps aside before looking at anything else
        async def send(self, message: Any) -> None:
            pass

    async def send(message: Any) -> None:
        pass

    assert not send_whole(send, 200, HEADERS, BODY)
    assert not send_whole(Cycle().send, 200, HEADERS, BODY)


def test_an_invalid_header_value_raises(port: int) -> None:
    global HEADERS
    saved = HEADERS
    HEADERS = [(b"x-bad", b"a\r\nset-cookie: x=1")]
    try:
        answer, _ = exchange(port, request("/whole"))
    finally:
        HEADERS = saved
    assert answer.startswith(b"HTTP/1.1 500")  # uvicorn's answer to an application error, nothing injected
    assert b"set-cookie" not in answer
