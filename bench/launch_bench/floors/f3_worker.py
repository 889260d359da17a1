"""F3: the async floor. A minimal asyncio worker: BLPOP a task from redis, run it, SET its result."""

from __future__ import annotations

import argparse
import asyncio
import json

import redis.asyncio as redis
import uvloop

from launch_bench import models

QUEUE = "bench:tasks"
RESULT_PREFIX = "bench:result:"
RESULT_TTL_S = 600


async def consume(client: redis.Redis) -> None:
    while True:
        _, raw = await client.blpop([QUEUE])
        task = json.loads(raw)
        try:
            body = {"status": "SUCCESS", "result": models.async_noop(**task["args"])}
        except Exception as exc:  # a failed task still gets a result
            body = {"status": "FAILURE", "traceback": repr(exc)}
        await client.set(RESULT_PREFIX + task["id"], json.dumps(body), ex=RESULT_TTL_S)


async def main_async(port: int, consumers: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, max_connections=consumers + 1)
    await client.ping()
    await asyncio.gather(*(consume(client) for _ in range(consumers)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--consumers", type=int, default=1)
    args = parser.parse_args()
    uvloop.run(main_async(args.port, args.consumers))


if __name__ == "__main__":
    main()
