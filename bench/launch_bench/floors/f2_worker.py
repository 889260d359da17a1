"""F2's worker process: reads framed requests from a unix socket, runs the model, writes framed results."""

from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import uvloop

from launch_bench import models
from launch_bench.floors.asgi import failure, success
from launch_bench.floors.wire import pack, read_frame

MODEL_NAMES = sorted(models.SYNC_MODELS)
EXECUTOR = ThreadPoolExecutor(max_workers=64)


def run_model(name: str, payload: bytes) -> tuple[int, bytes]:
    try:
        return 1, success(models.SYNC_MODELS[name](**json.loads(payload)["args"]))
    except Exception as exc:  # the floor reports failures like a platform would
        return 0, failure(repr(exc))


async def handle(request_id: int, flag: int, payload: bytes, writer: asyncio.StreamWriter) -> None:
    name = MODEL_NAMES[flag]
    if name in models.BLOCKING:
        ok, body = await asyncio.get_running_loop().run_in_executor(EXECUTOR, run_model, name, payload)
    else:
        ok, body = run_model(name, payload)
    writer.write(pack(request_id, ok, body))


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            request_id, flag, payload = await read_frame(reader)
            if MODEL_NAMES[flag] in models.BLOCKING:
                task = asyncio.create_task(handle(request_id, flag, payload, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                await handle(request_id, flag, payload, writer)
    except asyncio.IncompleteReadError:
        writer.close()


async def main_async(socket_path: str) -> None:
    server = await asyncio.start_unix_server(serve_connection, path=socket_path)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    uvloop.run(main_async(parser.parse_args().socket))


if __name__ == "__main__":
    main()
