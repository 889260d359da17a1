"""F2: the F1 front, but every request crosses a unix socket to one worker process (the split's cost)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

from launch_bench.floors.asgi import ASGIApp, Receive, Scope, Send, read_body, respond, serve
from launch_bench.floors.f2_worker import MODEL_NAMES
from launch_bench.floors.wire import pack, read_frame

MODEL_INDEX = {name: i for i, name in enumerate(MODEL_NAMES)}


class WorkerLink:
    """One multiplexed connection to the worker; responses are matched to requests by id."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.next_id = 0
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        reader, self.writer = await asyncio.open_unix_connection(self.socket_path)
        asyncio.get_running_loop().create_task(self._read_loop(reader))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            request_id, ok, payload = await read_frame(reader)
            self.pending.pop(request_id).set_result((ok, payload))

    async def call(self, model_index: int, payload: bytes) -> tuple[int, bytes]:
        assert self.writer is not None
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        self.writer.write(pack(self.next_id, model_index, payload))
        return await future


def spawn_worker(socket_path: str) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "launch_bench.floors.f2_worker", "--socket", socket_path]
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("F2 worker did not start")
        time.sleep(0.01)
    return worker


def make_app(link: WorkerLink) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await link.connect()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        if path == "/healthz":
            await respond(send, 200, b'{"ok":true}')
        elif path.startswith("/predict/") and path[9:] in MODEL_INDEX:
            ok, body = await link.call(MODEL_INDEX[path[9:]], await read_body(receive))
            await respond(send, 200 if ok else 500, body)
        else:
            await respond(send, 404, b'{"detail":"not found"}')

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    socket_path = os.path.join(tempfile.mkdtemp(prefix="bench-f2-"), "worker.sock")
    worker = spawn_worker(socket_path)
    try:
        serve(make_app(WorkerLink(socket_path)), parser.parse_args().port)
    finally:
        worker.terminate()


if __name__ == "__main__":
    main()
