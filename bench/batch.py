#!/usr/bin/env python3
"""Batch jobs against the same bundle on an async endpoint, in one run.

Starts one `launch server` from the repository's .venv on core 0 and, from core 1, measures with a bundle
whose environment is cached (no requirements):

- a 3-row batch job, submit → first result and submit → SUCCESS, with no endpoint of the bundle (the job
  starts a worker of its own) and with a READY endpoint of it (the job borrows its warm workers);
- throughput: N items as one batch job (its own worker) against the same N as async tasks on an async
  endpoint of the same bundle (one worker, submitted and long-polled by C concurrent clients).

Prints a Markdown table with the goals (first result ≤ 1 s and the 3-row job ≤ 2 s on a cached bundle;
batch throughput reported as a ratio to the async endpoint's) and PASS/FAIL where there is a goal.

    .venv/bin/python bench/batch.py [--items 2000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from launch_bench.server import free_port  # bench/ is on the path when a script here runs

from launch import LaunchClient

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"


def double(x: int = 0) -> dict[str, int]:
    return {"y": x * 2}


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "launch"), "server", "--port", str(port), "--data-dir", str(root / "data"), "--log-level",
           "warning"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - the server keeps it for its life
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"server did not start; see {root}/server.log")
    out = subprocess.run([str(BIN / "launch"), "api-keys", "create", "--user", "bench", "--data-dir",
                          str(root / "data")], capture_output=True, text=True, check=True).stdout
    return process, url, out.strip().splitlines()[-1]


def run_job(client: LaunchClient, bundle: Any, inputs: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds to the first finished item, seconds to SUCCESS) of one batch job."""
    begin = time.perf_counter()
    job_id = client.batch_async_request(bundle, inputs=inputs)
    first = None
    while True:
        job = client.get_batch_async_response(job_id)
        if first is None and (job.get("done") or 0) + (job.get("failed") or 0) > 0:
            first = time.perf_counter() - begin
        if job["status"] in ("SUCCESS", "FAILURE"):
            if job["status"] != "SUCCESS" or job["done"] != len(inputs):
                raise RuntimeError(f"batch job failed: {job}")
            total = time.perf_counter() - begin
            return (first if first is not None else total), total
        time.sleep(0.01)


async def async_tasks(url: str, key: str, endpoint: str, items: int, concurrency: int) -> float:
    """Seconds for ``items`` async tasks, submitted and long-polled by ``concurrency`` clients."""
    counter = iter(range(items))

    async def client_loop(http: httpx.AsyncClient) -> None:
        for i in counter:
            answer = await http.post("/v1/async-tasks", params={"model_endpoint_name": endpoint},
                                     json={"args": {"x": i}, "return_pickled": False})
            task_id = answer.json()["task_id"]
            while True:
                task = (await http.get(f"/v1/async-tasks/{task_id}", params={"wait": 20})).json()
                if task["status"] != "PENDING":
                    if task["status"] != "SUCCESS":
                        raise RuntimeError(f"task failed: {task}")
                    break

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=60, limits=limits, trust_env=False) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        return time.perf_counter() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    root = Path(tempfile.mkdtemp(prefix="launch-bench-batch-"))
    process, url, key = start_server(root)
    try:
        client = LaunchClient(api_key=key, endpoint=url)
        bundle = client.create_model_bundle(f"double-{uuid.uuid4().hex[:6]}", {}, predict_fn_or_cls=double,
                                            requirements=[])
        three = [{"x": i} for i in range(3)]
        run_job(client, bundle, three)  # warm-up: the environment is the server's own (cached)
        cold = [run_job(client, bundle, three) for _ in range(args.rounds)]
        sync_name = f"warm-{uuid.uuid4().hex[:6]}"
        warm_endpoint = client.create_model_endpoint(sync_name, bundle, endpoint_type="sync", cpus=1,
                                                     memory="1Gi", per_worker=8)
        assert warm_endpoint is not None
        warm_endpoint.wait_until_ready(timeout=120, progress=False)
        warm = [run_job(client, bundle, three) for _ in range(args.rounds)]
        client.delete_model_endpoint(sync_name)
        time.sleep(1)  # its worker drains and stops: the throughput job runs on its own worker
        inputs = [{"x": i} for i in range(args.items)]
        batch_rate = statistics.median(args.items / run_job(client, bundle, inputs)[1] for _ in range(args.rounds))
        async_name = f"async-{uuid.uuid4().hex[:6]}"
        endpoint = client.create_model_endpoint(async_name, bundle, endpoint_type="async", cpus=1, memory="1Gi",
                                                per_worker=args.concurrency)
        assert endpoint is not None
        endpoint.wait_until_ready(timeout=120, progress=False)
        async_rate = statistics.median(
            args.items / asyncio.run(async_tasks(url, key, async_name, args.items, args.concurrency))
            for _ in range(args.rounds))
        client.delete_model_endpoint(async_name)
    finally:
        process.terminate()
        process.wait(60)
        shutil.rmtree(root, ignore_errors=True)

    def row(name: str, seconds: float, limit: float) -> str:
        return f"| {name} | {seconds:.3f} s | ≤ {limit:g} s | {'PASS' if seconds <= limit else 'FAIL'} |"

    med = statistics.median
    print(f"# batch jobs ({args.rounds} rounds, median; {args.items} items for throughput, async at "
          f"c={args.concurrency}; Python {sys.version.split()[0]})")
    print("| measure | observed | goal | |")
    print("|---|---|---|---|")
    print(row("3-row job, own worker: first result", med(c[0] for c in cold), 1.0))
    print(row("3-row job, own worker: SUCCESS", med(c[1] for c in cold), 2.0))
    print(row("3-row job, warm endpoint workers: first result", med(w[0] for w in warm), 1.0))
    print(row("3-row job, warm endpoint workers: SUCCESS", med(w[1] for w in warm), 2.0))
    print(f"| batch throughput (own worker) | {batch_rate:,.0f} items/s | reported | |")
    print(f"| async endpoint, same bundle | {async_rate:,.0f} tasks/s | reported | |")
    print(f"| batch / async | {batch_rate / async_rate:.2f}x | reported | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
