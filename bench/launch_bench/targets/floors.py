"""Floors: F1 (bare uvicorn), F2 (front + one worker over a unix socket), F3 (redis + asyncio worker)."""

from __future__ import annotations

import base64
import json
import random
import shutil
import sys
import time
import uuid

import redis

from launch_bench import models
from launch_bench.envs import BENCH_DIR
from launch_bench.loadgen import HttpCall
from launch_bench.server import ServerProcess, free_port
from launch_bench.targets.base import AsyncSpec, RunContext, Target

LAUNCH_BODY = json.dumps({"args": {"x": 1}, "return_pickled": False}).encode()


def payload_body(size: int) -> bytes:
    """An echo request of about ``size`` bytes: one base64 text argument (how images and audio travel)."""
    text = base64.b64encode(random.Random(size).randbytes(size * 3 // 4)).decode()
    return json.dumps({"args": {"x": text}, "return_pickled": False}).encode()


FAILURE_MARKER = '"FAILURE"'
PY_ENV = {"PYTHONPATH": str(BENCH_DIR)}


class F1(Target):
    name = "F1"
    group = "floor"
    module = "launch_bench.floors.f1_app"
    sync_models = frozenset(models.SYNC_MODELS) | frozenset(models.PAYLOADS)
    stream_models = frozenset({"tokens"})

    def start(self, ctx: RunContext) -> dict[str, float]:
        self.port = free_port()
        server = ServerProcess(
            [sys.executable, "-m", self.module, "--port", str(self.port)],
            ctx.log(self.name),
            env=PY_ENV,
            cwd=BENCH_DIR,
        )
        self.servers = [server]
        return {"startup_s": server.wait_http(self.url("/healthz"), timeout_s=60)}

    def sync_call(self, model: str) -> HttpCall:
        if model in models.PAYLOADS:
            return HttpCall(self.url("/predict/echo"), payload_body(models.PAYLOADS[model]), "", FAILURE_MARKER)
        return HttpCall(self.url(f"/predict/{model}"), LAUNCH_BODY, failure_marker=FAILURE_MARKER)

    def stream_call(self, model: str) -> HttpCall:
        return HttpCall(self.url("/stream/tokens"), b'{"x": 1}')


class F2(F1):
    name = "F2"
    module = "launch_bench.floors.f2_front"
    stream_models = frozenset()


class F3(Target):
    name = "F3"
    group = "floor"
    async_models = frozenset({"noop"})

    def prepare(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (bench/run installs it with apt)")

    def start(self, ctx: RunContext) -> dict[str, float]:
        self.port = free_port()
        redis_server = ServerProcess(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            ctx.log("F3-redis"),
        )
        self.servers = [redis_server]
        client = redis.Redis(host="127.0.0.1", port=self.port)
        self._wait_ping(client, redis_server)
        worker = ServerProcess(
            [sys.executable, "-m", "launch_bench.floors.f3_worker", "--port", str(self.port)],
            ctx.log("F3-worker"),
            env=PY_ENV,
            cwd=BENCH_DIR,
        )
        self.servers.append(worker)
        self._round_trip(client)
        return {"startup_s": time.monotonic() - redis_server.started}

    @staticmethod
    def _wait_ping(client: redis.Redis, server: ServerProcess) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.proc.poll() is None:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start; see {server.log_path}")

    @staticmethod
    def _round_trip(client: redis.Redis) -> None:
        """Readiness: one task goes through the worker."""
        task_id = uuid.uuid4().hex
        client.rpush("bench:tasks", json.dumps({"id": task_id, "args": {"x": 1}}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get("bench:result:" + task_id) is not None:
                return
            time.sleep(0.01)
        raise RuntimeError("F3 worker did not answer")

    def async_spec(self, model: str) -> AsyncSpec:
        return AsyncSpec(["--backend", "redis", "--redis-port", str(self.port)])
