"""Peer targets: BentoML, Ray Serve and LitServe, each started from its own bench/.envs/<name> venv."""

from __future__ import annotations

import os
from pathlib import Path

from launch_bench import models
from launch_bench.envs import BENCH_DIR, ensure_env
from launch_bench.loadgen import HttpCall
from launch_bench.server import ServerProcess, free_port
from launch_bench.targets.base import AsyncSpec, RunContext, Target

PLAIN_BODY = b'{"x": 1}'
QUIET_ENV = {
    "PYTHONPATH": str(BENCH_DIR),
    "BENTOML_DO_NOT_TRACK": "True",
    "RAY_USAGE_STATS_ENABLED": "0",
    "LITSERVE_DISABLE_TELEMETRY": "1",
    "PYTHONWARNINGS": "ignore",
}


class Peer(Target):
    group = "peer"
    env_name = ""
    ready_path = "/healthz"
    start_timeout_s = 180.0
    sync_models = frozenset(models.SYNC_MODELS)
    stream_models = frozenset({"tokens"})

    def __init__(self) -> None:
        super().__init__()
        self.python = Path()

    def prepare(self) -> None:
        self.python = ensure_env(self.env_name)

    def argv(self, ctx: RunContext) -> list[str]:
        raise NotImplementedError

    def extra_env(self, ctx: RunContext) -> dict[str, str]:
        return {}

    def start(self, ctx: RunContext) -> dict[str, float]:
        self.port = free_port()
        env = {**QUIET_ENV, **self.extra_env(ctx)}
        server = ServerProcess(self.argv(ctx), ctx.log(self.name), env=env, cwd=BENCH_DIR)
        self.servers = [server]
        return {"startup_s": server.wait_http(self.url(self.ready_path), self.start_timeout_s)}

    def sync_call(self, model: str) -> HttpCall:
        return HttpCall(self.url(f"/{model}"), PLAIN_BODY)

    def stream_call(self, model: str) -> HttpCall:
        return HttpCall(self.url(f"/{model}"), PLAIN_BODY)


class BentoML(Peer):
    name = "bentoml"
    env_name = "bentoml"
    ready_path = "/readyz"
    async_models = frozenset({"noop"})

    def argv(self, ctx: RunContext) -> list[str]:
        return [
            str(self.python),
            "-m",
            "bentoml",
            "serve",
            "launch_bench.peers.bentoml_service:Bench",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def extra_env(self, ctx: RunContext) -> dict[str, str]:
        home = ctx.run_dir / "bentoml-home"
        os.makedirs(home, exist_ok=True)
        return {"BENTOML_HOME": str(home)}

    def async_spec(self, model: str) -> AsyncSpec:
        return AsyncSpec(
            [
                "--backend",
                "http",
                "--body-style",
                "plain",
                "--submit-url",
                self.url(f"/{model}/submit"),
                "--status-url",
                self.url(f"/{model}/status?task_id={{task_id}}"),
            ]
        )


class RayServe(Peer):
    name = "ray"
    env_name = "ray"

    def argv(self, ctx: RunContext) -> list[str]:
        return [str(self.python), "-m", "launch_bench.peers.ray_app", "--port", str(self.port)]


class LitServe(Peer):
    name = "litserve"
    env_name = "litserve"
    ready_path = "/health"

    def argv(self, ctx: RunContext) -> list[str]:
        return [str(self.python), "-m", "launch_bench.peers.litserve_app", "--port", str(self.port)]
