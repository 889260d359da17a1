#!/usr/bin/env python3
"""What isolation costs: worker start time and sync latency with the sandbox against without it, same run.

Starts two `launch server`s from the repository's .venv on core 0 (one with `--sandbox required`, one with
`--sandbox off`), and from core 1: creates endpoints of a callable bundle (environment cached: no
requirements) and times create → READY, then sends sequential sync echo requests over one keep-alive
connection and takes the p50. Prints the differences against the goals (≤ +100 ms start, no measurable
change per request, taken as ≤ +0.05 ms at the p50) with PASS/FAIL.

    .venv/bin/python bench/isolation.py [--starts 5] [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from launch_bench.server import free_port  # bench/ is on the path when a script here runs

from launch import LaunchClient

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
BODY = b'{"args": {"text": "hello, isolation"}, "return_pickled": false}'


def echo(text: str) -> dict[str, str]:
    return {"text": text}


class Server:
    def __init__(self, sandbox: str, root: Path) -> None:
        self.data = root / f"data-{sandbox}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(BIN / "launch"), "server", "--port", str(self.port), "--data-dir", str(self.data),
               "--sandbox", sandbox, "--log-level", "warning"]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        self.log = open(root / f"server-{sandbox}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server ({sandbox}) did not start; see {root}")
        key = subprocess.run([str(BIN / "launch"), "api-keys", "create", "--user", "bench", "--data-dir",
                              str(self.data)], capture_output=True, text=True, check=True).stdout.strip()
        self.key = key.splitlines()[-1]
        self.client = LaunchClient(api_key=self.key, endpoint=self.url)
        self.bundle = self.client.create_model_bundle(f"echo-{uuid.uuid4().hex[:6]}", {}, predict_fn_or_cls=echo,
                                                      requirements=[])

    def start_time(self) -> float:
        """Seconds from create to READY for a new endpoint (a new worker in its sandbox, or not)."""
        name = f"iso-{uuid.uuid4().hex[:8]}"
        begin = time.perf_counter()
        endpoint = self.client.create_model_endpoint(name, self.bundle, endpoint_type="sync", cpus=1,
                                                     memory="1Gi", min_workers=1, max_workers=1, per_worker=8)
        while endpoint.status() != "READY":
            time.sleep(0.005)
        elapsed = time.perf_counter() - begin
        self.client.delete_model_endpoint(name)
        return elapsed

    def sync_p50(self, requests: int) -> float:
        name = f"iso-lat-{uuid.uuid4().hex[:8]}"
        endpoint = self.client.create_model_endpoint(name, self.bundle, endpoint_type="sync", cpus=1,
                                                     memory="1Gi", min_workers=1, max_workers=1, per_worker=8)
        while endpoint.status() != "READY":
            time.sleep(0.01)
        latencies = []
        with httpx.Client(base_url=self.url, auth=(self.key, ""), trust_env=False) as http:
            path = f"/v1/sync-tasks?model_endpoint_name={name}"
            for i in range(requests + 200):
                begin = time.perf_counter()
                response = http.post(path, content=BODY, headers={"content-type": "application/json"})
                if i >= 200:  # warm-up
                    latencies.append(time.perf_counter() - begin)
                assert response.status_code == 200, response.text
        self.client.delete_model_endpoint(name)
        return statistics.median(latencies)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    root = Path(tempfile.mkdtemp(prefix="launch-isolation-"))
    servers = {mode: Server(mode, root) for mode in ("required", "off")}
    try:
        starts: dict[str, list[float]] = {mode: [] for mode in servers}
        p50s: dict[str, list[float]] = {mode: [] for mode in servers}
        for _ in range(args.starts):  # interleaved, so drift hits both alike
            for mode, server in servers.items():
                starts[mode].append(server.start_time())
        for _ in range(3):
            for mode, server in servers.items():
                p50s[mode].append(server.sync_p50(args.requests // 3))
    finally:
        for server in servers.values():
            server.stop()
    start_on, start_off = (statistics.median(starts[m]) * 1000 for m in ("required", "off"))
    p50_on, p50_off = (statistics.median(p50s[m]) * 1000 for m in ("required", "off"))
    rows = [
        ("worker start (create → READY), median", f"{start_on:.0f} ms sandboxed vs {start_off:.0f} ms",
         start_on - start_off, "ms", 100.0),
        ("sync echo p50, c=1", f"{p50_on:.3f} ms sandboxed vs {p50_off:.3f} ms", p50_on - p50_off, "ms", 0.05),
    ]
    print(f"# isolation cost ({args.starts} starts each, {args.requests} sequential requests each; {root})")
    print("| measure | observed | added | goal | |")
    print("|---|---|---|---|---|")
    for name, observed, added, unit, limit in rows:
        verdict = "PASS" if added <= limit else "FAIL"
        print(f"| {name} | {observed} | {added:+.3f} {unit} | ≤ +{limit:g} {unit} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
