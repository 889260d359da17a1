"""The callback client against small receivers on loopback: what it sends, how it reads answers (length,
chunked, to the end of the connection, interim 1xx), connection reuse and replacement, limits and the guard."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import pytest

from launch.net_guard import FetchDenied, FetchPolicy
from launch.server.control.callback_client import MAX_RESPONSE_BODY, CallbackClient, CallbackHTTPError

pytestmark = pytest.mark.timeout(30)
OPEN = FetchPolicy(allow_private=True)
OK = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one request."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


def run(handler: Handler, client_steps: Callable[[CallbackClient, str], Awaitable[object]],
        timeout: float = 5) -> object:
    """Serve ``handler`` on a loopback port and run ``client_steps(client, url)`` against it."""
    async def main() -> object:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = CallbackClient(OPEN, timeout)
        try:
            return await client_steps(client, f"http://127.0.0.1:{port}/hook")
        finally:
            await client.close()
            server.close()

    return asyncio.run(main())


def posts(times: int) -> Callable[[CallbackClient, str], Awaitable[list[int]]]:
    """Client steps: ``times`` empty POSTs one after another; their statuses."""
    async def steps(client: CallbackClient, url: str) -> list[int]:
        return [await client.post(url, b"{}", {}) for _ in range(times)]

    return steps


def test_requests_carry_the_body_headers_and_basic_auth_and_reuse_one_connection() -> None:
    seen: list[tuple[bytes, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(OK)

    async def steps(client: CallbackClient, url: str) -> list[int]:
        return [await client.post(url + "?a=1 b", b'{"n": %d}' % i, {"x-sig": "t=1"}, basic=("ann", "pa:ss"))
                for i in range(3)]

    assert run(handler, steps) == [204, 204, 204]
    assert connections == 1
    head, body = seen[2]
    assert head.startswith(b"POST /hook?a=1%20b HTTP/1.1\r\n") and body == b'{"n": 2}'
    assert b"\r\nx-sig: t=1\r\n" in head and b"\r\ncontent-length: 8\r\n" in head and b"\r\nhost: 127.0.0.1:" in head
    assert f"authorization: Basic {base64.b64encode(b'ann:pa:ss').decode()}".encode() in head


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
])
def test_chunked_and_interim_answers_end_where_the_message_ends(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer)

    statuses = run(handler, posts(2))
    assert statuses in ([200, 200], [201, 201])


def test_an_answer_ended_by_closing_the_connection_and_a_closed_idle_connection() -> None:
    """HTTP/1.0-style answers end with the connection; the next request opens another one."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\n\r\nno length, ends at close")
        await writer.drain()
        writer.close()

    assert run(handler, posts(2)) == [500, 500]
    assert connections == 2


def test_a_pooled_connection_the_receiver_dropped_is_replaced_once() -> None:
    """Keep-alive answers, then the receiver drops the connection without answering the next request."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        try:
            await read_request(reader)  # the second request on this connection is never answered
        finally:
            writer.close()

    assert run(handler, posts(3)) == [204, 204, 204]
    assert connections == 3


def test_a_receiver_that_never_answers_times_out_and_a_long_answer_is_not_read_to_its_end() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def timed_out(client: CallbackClient, url: str) -> object:
        with pytest.raises(TimeoutError):
            await client.post(url, b"{}", {})
        return "timed out"

    assert run(silent, timed_out, timeout=0.2) == "timed out"

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 100000000\r\n\r\n" + b"x" * (2 * MAX_RESPONSE_BODY))
        await asyncio.sleep(10)

    assert run(endless, posts(1)) == [202]


def test_garbage_and_refused_connections_are_errors() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await asyncio.sleep(1)

    async def fails(client: CallbackClient, url: str) -> str:
        with pytest.raises(CallbackHTTPError) as caught:
            await client.post(url, b"{}", {})
        return str(caught.value)

    assert "not valid HTTP" in str(run(garbage, fails))

    async def refused(client: CallbackClient, url: str) -> str:
        return await fails(client, "http://127.0.0.1:9/")  # discard port: nothing listens on loopback

    assert "cannot connect" in str(run(garbage, refused))


def test_internal_receivers_are_refused_by_name_and_by_address_unless_allowed() -> None:
    async def main() -> None:
        client = CallbackClient(FetchPolicy(), 5)
        for url in ("http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/hook"):
            with pytest.raises(FetchDenied, match="internal"):
                await client.post(url, b"{}", {})
        with pytest.raises(FetchDenied, match="scheme"):
            await client.post("ftp://example.com/x", b"{}", {})

    asyncio.run(main())
