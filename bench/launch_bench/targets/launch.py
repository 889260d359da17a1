"""Our platform as a target: `launch server` from the repository's .venv, endpoints created through the SDK."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from launch_bench import models, procs
from launch_bench.envs import BENCH_DIR
from launch_bench.loadgen import HttpCall
from launch_bench.scenarios import ROUTES
from launch_bench.server import LOADGEN_CORE, ServerProcess, free_port
from launch_bench.targets.base import AsyncSpec, RunContext, Target
from launch_bench.targets.floors import FAILURE_MARKER, LAUNCH_BODY, payload_body

REPO = BENCH_DIR.parent
VENV_BIN = REPO / ".venv" / "bin"
WORKERS = {"min_workers": 1, "max_workers": 1, "per_worker": 64}
# Only the scale-from-zero endpoints have min_workers=0, so this changes nothing else. Submissions to the
# parked endpoint (whose one worker is held) queue up: room for all of them.
# The per-owner caps are raised for the control-plane phase (1,000 endpoints, 100,000 queued tasks of one owner),
# and the CPU overcommit for up to 7 endpoints asking cpus=1 on the one core the server is pinned to.
SERVER_ENV = {"LAUNCH_SCALE_TO_ZERO_AFTER_SECONDS": "2", "LAUNCH_MAX_QUEUED_TASKS": "1000000",
              "LAUNCH_WORKER_DRAIN_SECONDS": "2", "LAUNCH_MAX_ENDPOINTS_PER_OWNER": "5000",
              "LAUNCH_MAX_WORKERS_PER_OWNER": "100000", "LAUNCH_MAX_QUEUED_TASKS_PER_OWNER": "10000000",
              "LAUNCH_CPU_OVERCOMMIT": "16"}
LONG_POLL_SECONDS = 5
ZERO_ENDPOINTS = (("zero-sync", "echo", "sync"), ("zero-async", "noop", "async"))
LEGACY = "/v1/hosted_inference"
PICKLED_BODY = json.dumps({"args": {"x": 1}, "return_pickled": True}).encode()  # what the 0.3.3 client sends


def endpoint_for(kind: str, model: str) -> tuple[str, str]:
    """(model, endpoint type) of the endpoint a scenario runs on; it is named ``{model}-ep``."""
    if kind == "stream":
        return model, "streaming"
    if kind == "async" or model.startswith("poll"):
        return "noop", "async"
    if model.startswith("submit"):
        return "park", "async"
    if model in models.PAYLOADS or model.startswith("echo"):
        return "echo", "sync"
    return model, "sync"


class Launch(Target):
    name = "launch"
    group = "ours"
    sync_models = frozenset({"echo", "sleep", "matmul", *models.PAYLOADS, *ROUTES})
    stream_models = frozenset({"tokens"})
    stream_format = "launch-ndjson"
    async_models = frozenset({"noop"})

    def __init__(self) -> None:
        super().__init__()
        self.api_key = ""
        self.data_dir: Path | None = None
        self.done_task = ""  # a finished task, for the poll scenarios

    def prepare(self) -> None:
        if not (VENV_BIN / "launch").exists():
            raise RuntimeError(f"{VENV_BIN / 'launch'} is missing: run scripts/install first")
        numpy = subprocess.run(
            [str(VENV_BIN / "python"), "-c", "import numpy"], capture_output=True, check=False
        )
        if numpy.returncode != 0:
            self.sync_models = self.sync_models - {"matmul"}  # matmul needs numpy in Launch's venv

    server_flags: tuple[str, ...] = ()
    endpoint_extra: dict[str, Any] = {}

    def start(self, ctx: RunContext, extra_env: dict[str, str] | None = None) -> dict[str, float]:
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
                *self.server_flags,
            ],
            ctx.log(self.name),
            env={**SERVER_ENV, **(extra_env or {})},
        )
        self.servers = [*self.servers, server]
        startup_s = server.wait_http(self.url("/healthz"), timeout_s=120)
        self.api_key = self._create_key(data_dir)
        specs = self._endpoint_specs(ctx)
        timings = self._create_endpoints(specs)
        names = {spec["name"] for spec in specs}
        if "park-ep" in names:  # hold its worker: later submissions queue
            self._post("/v1/async-tasks?model_endpoint_name=park-ep", LAUNCH_BODY)
        if "noop-ep" in names:
            self.done_task = self._finished_task("noop-ep")
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
        wanted = sorted({endpoint_for(kind, model) for kind, model in ctx.wanted if self.supports(kind, model)})
        specs = [{"name": f"{model}-ep", "model": model, "type": kind, **WORKERS,
                  **(self.endpoint_extra if kind == "async" else {})} for model, kind in wanted]
        for spec in specs:
            if spec["model"] == "park":
                spec["per_worker"] = 1
        # echo first: its create → READY is the cold-start number
        return sorted(specs, key=lambda spec: spec["name"] != "echo-ep")

    def _post(self, path: str, body: bytes | None) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(
            self.url(path), data=body, method="POST" if body is not None else "GET",
            headers={"Authorization": self.authorization, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def _finished_task(self, endpoint: str) -> str:
        task_id = str(self._post(f"/v1/async-tasks?model_endpoint_name={endpoint}", LAUNCH_BODY)["task_id"])
        record = self._post(f"/v1/async-tasks/{task_id}?wait=30", None)
        if record["status"] != "SUCCESS":
            raise RuntimeError(f"the poll scenarios' task did not succeed: {record}")
        return task_id

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
        auth = self.authorization
        if model in models.PAYLOADS:
            body = payload_body(models.PAYLOADS[model])
            return HttpCall(self.url("/v1/sync-tasks?model_endpoint_name=echo-ep"), body, auth, FAILURE_MARKER)
        routes = {
            "echo@legacy": ("POST", f"{LEGACY}/task_sync/echo-ep"),
            "submit": ("POST", "/v1/async-tasks?model_endpoint_name=park-ep"),
            "submit@legacy": ("POST", f"{LEGACY}/task_async/park-ep"),
            "poll": ("GET", f"/v1/async-tasks/{self.done_task}"),
            "poll@legacy": ("GET", f"{LEGACY}/endpoints/noop-ep/task_async/{self.done_task}"),
        }
        if model == "echo@legacy-pickled":
            return HttpCall(self.url(f"{LEGACY}/task_sync/echo-ep"), PICKLED_BODY, auth, FAILURE_MARKER)
        if model in routes:
            method, path = routes[model]
            return HttpCall(self.url(path), LAUNCH_BODY, auth, FAILURE_MARKER, method)
        url = self.url(f"/v1/sync-tasks?model_endpoint_name={model}-ep")
        return HttpCall(url, LAUNCH_BODY, auth, FAILURE_MARKER)

    def memory_fields(self) -> dict[str, float]:
        """The gateway process alone, and its largest worker (a worker's model here is a tiny function:
        what a worker costs before its model)."""
        if not self.servers:
            return {}
        rss, pss = procs.process_memory_mb(self.servers[0].pid)
        workers = [procs.process_memory_mb(s.pid) for s in procs.tree(self.pids)
                   if b"launch.worker.main" in _cmdline(s.pid)]
        return {
            "server_rss_mb": rss, "server_pss_mb": pss,
            "worker_rss_mb": max((w[0] for w in workers), default=float("nan")),
            "worker_pss_mb": max((w[1] for w in workers), default=float("nan")),
        }

    def stream_call(self, model: str) -> HttpCall:
        url = self.url(f"/v1/streaming-tasks?model_endpoint_name={model}-ep&format=ndjson")
        return HttpCall(url, b'{"args": {"x": 1}}', self.authorization)

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


class LaunchTasks(Launch):
    """Launch's async path with the task features on: every task's outcome is POSTed to a callback receiver
    (on the load generator's core, standing for the user's system), and finished tasks are deleted by the
    retention sweep a few seconds after they end."""

    name = "launch-tasks"
    server_flags = ("--allow-private-fetch",)  # the receiver is on 127.0.0.1

    def prepare(self) -> None:
        super().prepare()
        self.sync_models = frozenset()

    def start(self, ctx: RunContext, extra_env: dict[str, str] | None = None) -> dict[str, float]:
        sink_port = free_port()
        self._sink = subprocess.Popen(
            ["taskset", "-c", LOADGEN_CORE, str(BENCH_DIR / ".envs" / "bench" / "bin" / "python"), "-m",
             "launch_bench.callback_sink", "--port", str(sink_port)],
            cwd=BENCH_DIR, env={**os.environ, "PYTHONPATH": str(BENCH_DIR)},
            stdout=ctx.log(f"{self.name}-sink").open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.endpoint_extra = {"default_callback_url": f"http://127.0.0.1:{sink_port}/hook"}
        return super().start(ctx, {"LAUNCH_TASK_RETENTION_SECONDS": "5", **(extra_env or {})})

    def stop(self) -> None:
        super().stop()
        sink = getattr(self, "_sink", None)
        if sink is not None:
            sink.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                sink.wait(timeout=10)
            sink.kill()
            self._sink = None
