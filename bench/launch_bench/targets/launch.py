"""Our platform as a target: `launch server` from the repository's .venv, endpoints created through the SDK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from launch_bench import procs
from launch_bench.envs import BENCH_DIR
from launch_bench.loadgen import HttpCall
from launch_bench.server import ServerProcess, free_port
from launch_bench.targets.base import AsyncSpec, RunContext, Target
from launch_bench.targets.floors import FAILURE_MARKER, LAUNCH_BODY

REPO = BENCH_DIR.parent
VENV_BIN = REPO / ".venv" / "bin"
WORKERS = {"min_workers": 1, "max_workers": 1, "per_worker": 64}
# Only the scale-from-zero endpoints have min_workers=0, so this changes nothing else.
SERVER_ENV = {"LAUNCH_SCALE_TO_ZERO_AFTER_SECONDS": "2"}
LONG_POLL_SECONDS = 5
ZERO_ENDPOINTS = (("zero-sync", "echo", "sync"), ("zero-async", "noop", "async"))


class Launch(Target):
    name = "launch"
    group = "ours"
    sync_models = frozenset({"echo", "sleep", "matmul"})
    async_models = frozenset({"noop"})

    def __init__(self) -> None:
        super().__init__()
        self.api_key = ""
        self.data_dir: Path | None = None

    def prepare(self) -> None:
        if not (VENV_BIN / "launch").exists():
            raise RuntimeError(f"{VENV_BIN / 'launch'} is missing: run scripts/install first")
        numpy = subprocess.run(
            [str(VENV_BIN / "python"), "-c", "import numpy"], capture_output=True, check=False
        )
        if numpy.returncode != 0:
            self.sync_models = frozenset({"echo", "sleep"})  # matmul needs numpy in Launch's venv

    def start(self, ctx: RunContext) -> dict[str, float]:
        data_dir = self.data_dir = ctx.run_dir / f"launch-data-r{ctx.round_index}"
        self.port = free_port()
        server = ServerProcess(
            [
                str(VENV_BIN / "launch"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--access-log",  # per-request access logging is off for every target
                "off",
            ],
            ctx.log(self.name),
            env=SERVER_ENV,
        )
        self.servers = [server]
        startup_s = server.wait_http(self.url("/healthz"), timeout_s=120)
        self.api_key = self._create_key(data_dir)
        timings = self._create_endpoints(self._endpoint_specs(ctx))
        return {
            "startup_s": startup_s,
            "ready_s": time.monotonic() - server.started,
            "endpoint_ready_s": timings.get("echo-ep", float("nan")),
        }

    def _create_key(self, data_dir: Path) -> str:
        out = subprocess.run(
            [str(VENV_BIN / "launch"), "api-keys", "create", "--user", "bench", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def _endpoint_specs(self, ctx: RunContext) -> list[dict[str, Any]]:
        specs = [
            {"name": f"{model}-ep", "model": model, "type": "async" if kind == "async" else "sync", **WORKERS}
            for kind, model in sorted(ctx.wanted)
            if self.supports(kind, model)
        ]
        return specs

    def _create_endpoints(self, specs: list[dict[str, Any]]) -> dict[str, float]:
        config = {"endpoint": self.url(""), "api_key": self.api_key, "timeout_s": 120, "endpoints": specs}
        out = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "launch_bench.launch_setup", json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=BENCH_DIR,
            env={"PYTHONPATH": str(BENCH_DIR), "PATH": "/usr/bin:/bin"},
        )
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"endpoint setup failed: {out.stderr[-2000:]}")
        timings: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
        return timings

    def stop(self) -> None:
        """Stop the tree, then drop the round's data dir (database, bundles) unless BENCH_KEEP_DATA=1"""
        super().stop()
        if self.data_dir is not None and os.environ.get("BENCH_KEEP_DATA") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def authorization(self) -> str:
        return f"Bearer {self.api_key}"

    def sync_call(self, model: str) -> HttpCall:
        url = self.url(f"/v1/sync-tasks?model_endpoint_name={model}-ep")
        return HttpCall(url, LAUNCH_BODY, self.authorization, FAILURE_MARKER)

    def async_spec(self, model: str) -> AsyncSpec:
        submit = self.url(f"/v1/async-tasks?model_endpoint_name={model}-ep")
        return AsyncSpec(
            [
                "--backend",
                "http",
                "--submit-url",
                submit,
                "--status-url",
                # polled the way Launch's SDK polls (EndpointResponseFuture.get): a long-poll that answers
                # when the task ends, instead of a GET every few milliseconds
                self.url("/v1/async-tasks/{task_id}?wait=" + str(LONG_POLL_SECONDS)),
                "--authorization",
                self.authorization,
            ]
        )

    def extra(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Scale-from-zero, on endpoints created after the load so they do not count in idle memory."""
        if not ctx.scale_from_zero:
            return []
        from launch_bench.targets.zero import scale_from_zero

        baseline = self.worker_processes()
        self._create_endpoints(
            [
                {"name": name, "model": model, "type": kind, **WORKERS, "min_workers": 0}
                for name, model, kind in ZERO_ENDPOINTS
            ]
        )
        return [
            scale_from_zero(
                self.url(""), self.authorization, name, model, kind, self.worker_processes, baseline
            )
            for name, model, kind in ZERO_ENDPOINTS
        ]

    def worker_processes(self) -> int:
        return sum(1 for s in procs.tree(self.pids) if b"launch.worker.main" in _cmdline(s.pid))


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read(256)
    except OSError:
        return b""
