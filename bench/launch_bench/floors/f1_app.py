"""F1: a bare uvicorn (uvloop, httptools) ASGI app that runs the model functions in-process."""

from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from launch_bench import models
from launch_bench.floors.asgi import Receive, Scope, Send, read_body, respond, serve, stream, success

EXECUTOR = ThreadPoolExecutor(max_workers=64)  # blocking models run here, like a per-worker concurrency of 64


async def predict(name: str, body: bytes) -> bytes:
    args = json.loads(body)["args"]
    fn = models.SYNC_MODELS[name]
    if name in models.BLOCKING:
        result = await asyncio.get_running_loop().run_in_executor(EXECUTOR, lambda: fn(**args))
    else:
        result = fn(**args)
    return success(result)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path: str = scope["path"]
    if path == "/healthz":
        await respond(send, 200, b'{"ok":true}')
    elif path.startswith("/predict/") and path[9:] in models.SYNC_MODELS:
        await respond(send, 200, await predict(path[9:], await read_body(receive)))
    elif path == "/stream/tokens":
        await read_body(receive)
        await stream(send, models.tokens(1))
    else:
        await respond(send, 404, b'{"detail":"not found"}')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    serve(app, parser.parse_args().port)


if __name__ == "__main__":
    main()
