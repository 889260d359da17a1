"""Workers listening on TCP serve only connections that first present their token (HELLO): a worker socket
open on a network does not serve whoever connects."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from launch import wire
from launch.server.worker_client import WorkerClient, WorkerUnreachable
from launch.worker.runtime import Runtime
from launch.worker.server import WorkerServer


def double(x: int) -> dict[str, int]:
    return {"y": 2 * x}


async def serve(token: bytes | None) -> tuple[Any, str]:
    worker = WorkerServer(Runtime(double), threads=1, token=token)
    server = await asyncio.get_running_loop().create_server(worker.protocol, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    return server, f"tcp://{host}:{port}"


REQUEST = orjson.dumps({"args": {"x": 21}, "return_pickled": False})


def test_the_right_token_is_served() -> None:
    async def scenario() -> None:
        server, address = await serve(b"s3cret")
        client = WorkerClient()
        reply = await client.predict(f"{address}#s3cret", REQUEST, 5)
        assert orjson.loads(orjson.loads(reply.body)["result"]) == {"y": 42}
        await client.close()
        server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("suffix", ["", "#wrong"])
def test_no_token_or_a_wrong_one_is_cut_off_unserved(suffix: str) -> None:
    async def scenario() -> None:
        server, address = await serve(b"s3cret")
        client = WorkerClient()
        with pytest.raises(WorkerUnreachable) as failure:
            await client.predict(address + suffix, REQUEST, 5)
        assert "s3cret" not in str(failure.value)
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_split_address() -> None:
    assert wire.split_address("tcp://10.0.0.2:5000#abc") == ("tcp://10.0.0.2:5000", b"abc")
    assert wire.split_address("unix:/run/w.sock") == ("unix:/run/w.sock", None)
