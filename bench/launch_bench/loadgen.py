"""Closed-loop HTTP load with wrk on the load-generator core, parsed from the Lua script's JSON line."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from launch_bench.server import LOADGEN_CORE

LUA = Path(__file__).with_name("wrk_json.lua")


@dataclass(frozen=True)
class HttpCall:
    """One request as every client sends it: URL, JSON body, auth header and a body marker meaning failure."""

    url: str
    body: bytes
    authorization: str = ""
    failure_marker: str = ""
    method: str = "POST"  # GET sends no body


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    raw: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def _parse(stdout: str) -> WrkResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    error_keys = ("non2xx", "bad_body", "connect_errors", "read_errors", "write_errors", "timeouts")
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        errors=int(sum(raw[k] for k in error_keys)),
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        raw=raw,
    )


def run_wrk(call: HttpCall, concurrency: int, duration_s: int, timeout_s: int = 10) -> WrkResult:
    """Run wrk with one thread and `concurrency` connections for duration_s seconds."""
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json") as body:
        body.write(call.body)
        body.flush()
        argv = [
            "taskset",
            "-c",
            LOADGEN_CORE,
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration_s}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(LUA),
            call.url,
            "--",
            body.name,
            call.authorization,
            call.failure_marker,
            call.method,
        ]
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
        )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-2000:]}")
    return _parse(out.stdout)
