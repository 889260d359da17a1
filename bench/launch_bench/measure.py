"""One measurement of one scenario on one running target: warm-up, timed window, CPU and memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from launch_bench import procs
from launch_bench.envs import BENCH_DIR
from launch_bench.loadgen import HttpCall, run_wrk
from launch_bench.scenarios import Mode, Scenario
from launch_bench.server import LOADGEN_CORE, SERVER_CORE
from launch_bench.targets.base import Target


def check_call(call: HttpCall) -> str:
    """One request before the load: returns '' when the answer is a 2xx without the failure marker."""
    headers = {"Content-Type": "application/json"}
    if call.authorization:
        headers["Authorization"] = call.authorization
    data = None if call.method == "GET" else call.body
    request = urllib.request.Request(call.url, data=data, headers=headers, method=call.method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if call.failure_marker and call.failure_marker in body:
        return f"failure in body: {body[:300]}"
    return ""


class CpuWindow:
    """CPU seconds and peak memory of the target's process tree over a with-block, and how much of the
    server core other processes (not ours: other work on the machine) used meanwhile."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = procs.PeakMemory(pids)
        self.cpu_s = 0.0
        self.foreign_pct = 0.0

    def __enter__(self) -> CpuWindow:
        self._cpu0 = procs.cpu_seconds(self.pids)
        self._core0 = procs.core_busy_seconds(int(SERVER_CORE))
        self._t0 = time.monotonic()
        self.peak.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak.__exit__(*exc)
        self.cpu_s = procs.cpu_seconds(self.pids) - self._cpu0
        core_s = procs.core_busy_seconds(int(SERVER_CORE)) - self._core0
        self.foreign_pct = max(0.0, 100 * (core_s - self.cpu_s) / (time.monotonic() - self._t0))

    def fields(self) -> dict[str, float]:
        return {
            "rss_loaded_mb": self.peak.rss_mb,
            "pss_loaded_mb": self.peak.pss_mb,
            "core0_foreign_pct": self.foreign_pct,
        }


QUIET_PCT = 10.0


def wait_quiet(pids: list[int], max_wait_s: float) -> float:
    """Before a timed window: wait (bounded) until other processes leave the server core mostly idle.
    Returns the seconds waited; the window's own foreign share is recorded anyway."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait_s:
        if procs.core_foreign_pct(int(SERVER_CORE), pids, 0.5) < QUIET_PCT:
            break
    return time.monotonic() - start


def measure_sync(target: Target, sc: Scenario, mode: Mode) -> dict[str, Any]:
    call = target.sync_call(sc.model)
    problem = check_call(call)
    if problem:
        return {"error": problem}
    run_wrk(call, sc.concurrency, mode.warmup_s)
    waited = wait_quiet(target.pids, mode.quiet_max_wait_s)
    with CpuWindow(target.pids) as window:
        res = run_wrk(call, sc.concurrency, mode.window_s)
    return {
        "requests": res.requests,
        "rps": res.rps,
        "p50_ms": res.p50_ms,
        "p90_ms": res.p90_ms,
        "p99_ms": res.p99_ms,
        "max_ms": res.max_ms,
        "errors": res.errors,
        "cpu_ms_per_req": 1e3 * window.cpu_s / max(res.requests, 1),
        **window.fields(),
        "quiet_wait_s": waited,
    }


def run_script(module: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a load script pinned to the load-generator core and parse its BENCH_JSON line."""
    argv = ["taskset", "-c", LOADGEN_CORE, sys.executable, "-m", module, *args]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=BENCH_DIR,
        env={**os.environ, "PYTHONPATH": str(BENCH_DIR)},
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"{module} failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    return result


def measure_stream(target: Target, sc: Scenario, mode: Mode) -> dict[str, Any]:
    call = target.stream_call(sc.model)
    base = ["--url", call.url, "--body", call.body.decode(), "--concurrency", str(sc.concurrency),
            "--format", target.stream_format]
    if call.authorization:
        base += ["--authorization", call.authorization]
    run_script("launch_bench.streamload", [*base, "--duration", str(mode.warmup_s)], 120)
    wait_quiet(target.pids, mode.quiet_max_wait_s)
    with CpuWindow(target.pids) as window:
        res = run_script("launch_bench.streamload", [*base, "--duration", str(mode.window_s)], 300)
    res["cpu_ms_per_item"] = 1e3 * window.cpu_s / max(res["items"], 1)
    res.update(window.fields())
    return res


def _drain_timeout(window_s: float) -> float:
    """How long a burst may take to drain after submission stops before the rest counts as incomplete."""
    return 10 + 3 * window_s


def measure_async(target: Target, sc: Scenario, mode: Mode) -> dict[str, Any]:
    base = [*target.async_spec(sc.model).args, "--concurrency", str(sc.concurrency)]
    warm = ["--tasks", str(mode.async_tasks // 10), "--window", str(mode.warmup_s)]
    warm_timeout = mode.warmup_s + _drain_timeout(mode.warmup_s)
    run_script("launch_bench.asyncload", [*base, *warm, "--timeout", str(warm_timeout)], warm_timeout + 60)
    timeout = mode.window_s + _drain_timeout(mode.window_s)
    timed = ["--tasks", str(mode.async_tasks), "--window", str(mode.window_s), "--timeout", str(timeout)]
    timed += ["--latency-window", str(mode.window_s)]
    wait_quiet(target.pids, mode.quiet_max_wait_s)
    with CpuWindow(target.pids) as window:
        res = run_script("launch_bench.asyncload", [*base, *timed], timeout + mode.window_s + 60)
    res["errors"] = res["submit_errors"] + res["failed"] + res["incomplete"] + res.get("closed_errors", 0)
    res["cpu_ms_per_task"] = 1e3 * window.cpu_s / max(res["completed"] + res.get("closed_tasks", 0), 1)
    res.update(window.fields())
    return res


MEASURES = {"sync": measure_sync, "stream": measure_stream, "async": measure_async}
