"""Ray Serve peer: a local one-CPU Ray instance, one replica behind Serve's HTTP proxy, FastAPI routes."""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray
from fastapi import Body, FastAPI
from fastapi.responses import StreamingResponse
from ray import serve

from launch_bench import models

api = FastAPI()


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Bench:
    @api.get("/healthz")
    async def healthz(self) -> dict[str, bool]:
        return {"ok": True}

    @api.post("/echo")
    async def echo(self, x: Any = Body(embed=True)) -> Any:
        return models.echo(x)

    @api.post("/sleep")
    def sleep(self, x: Any = Body(embed=True)) -> Any:  # blocking: FastAPI runs sync routes in threads
        return models.sleep_1ms(x)

    @api.post("/matmul")
    async def matmul(self, x: Any = Body(embed=True)) -> float:
        return models.matmul(x)

    @api.post("/tokens")
    async def tokens(self, x: Any = Body(embed=True)) -> StreamingResponse:
        return StreamingResponse(models.tokens(x), media_type="text/plain")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    quiet = {"enable_access_log": False}  # no per-request log line, as for every other target
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=quiet)
    serve.run(Bench.bind(), route_prefix="/", logging_config=quiet)  # type: ignore[attr-defined]
    while True:  # serve until the harness stops the process tree
        time.sleep(3600)


if __name__ == "__main__":
    main()
