#!/usr/bin/env python3
"""Throughput on the scale-out engines next to the embedded defaults, and with two gateways, in one run.

Needs the engines of `scripts/engines start` (source `.engines/env`). Three deployments, each measured the
same way from this process (asyncio + httpx, `--concurrency` requests in flight):
- embedded: SQLite, embedded broker, local objects (one gateway);
- engines: PostgreSQL + Redis + S3 (moto), one gateway;
- 2 gateways: the same engines, two gateways; requests alternate between them.
Each gets one sync and one async endpoint of an echo bundle (per_worker 8, one worker). Sync: requests per
second for `--seconds`. Async: `--tasks` submissions, then long-polls until all are done; tasks per second
from the first submission to the last result. Prints each against the embedded figure of the same run.

    . .engines/env && .venv/bin/python bench/scaleout.py [--seconds 10] [--tasks 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from launch_bench.server import free_port  # bench/ is on the path when a script here runs

from launch import LaunchClient

REPO = Path(__file__).resolve().parent.parent
LAUNCH = str(REPO / ".venv" / "bin" / "launch")


def echo(text: str) -> dict[str, str]:
    return {"text": text}


def engines(name: str) -> dict[str, str]:
    import psycopg

    database = os.environ["LAUNCH_TEST_DATABASE_URL"]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return {"LAUNCH_DATABASE_URL": database.rpartition("/")[0] + "/" + name,
            "LAUNCH_BROKER_URL": f"{os.environ['LAUNCH_TEST_BROKER_URL']}?namespace={name}",
            "LAUNCH_OBJECTS_URL": f"{os.environ['LAUNCH_TEST_OBJECTS_URL'].rstrip('/')}/{name}"}


class Gateway:
    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        data.mkdir(parents=True, exist_ok=True)
        self.log = open(data / f"server-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [LAUNCH, "server", "--port", str(self.port), "--data-dir", str(data), "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway on {data} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def deploy(gateways: list[Gateway], data: Path) -> tuple[str, str, str]:
    out = subprocess.run([LAUNCH, "api-keys", "create", "--user", "bench", "--data-dir", str(data)],
                         check=True, capture_output=True, text=True, env=gateways[0].env)
    key = out.stdout.strip().splitlines()[-1]
    client = LaunchClient(api_key=key, endpoint=gateways[0].url)
    bundle = client.create_model_bundle(f"echo-{uuid.uuid4().hex[:6]}", {}, predict_fn_or_cls=echo,
                                        requirements=[])
    names = []
    for kind in ("sync", "async"):
        name = f"{kind}-{uuid.uuid4().hex[:6]}"
        endpoint = client.create_model_endpoint(name, bundle, endpoint_type=kind, cpus=1, memory="1Gi",
                                                min_workers=1, max_workers=1, per_worker=8)
        deadline = time.monotonic() + 120
        while endpoint.status() != "READY":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not READY")
            time.sleep(0.2)
        names.append(name)
    for gateway in gateways[1:]:  # the other gateways see the leader's ready workers
        with httpx.Client(base_url=gateway.url, auth=(key, ""), timeout=30) as other:
            deadline = time.monotonic() + 60
            while other.post(f"/v1/sync-tasks?model_endpoint_name={names[0]}",
                             json={"args": {"text": "warm"}, "return_pickled": False}).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the second gateway never served the sync endpoint")
                time.sleep(0.2)
    return key, names[0], names[1]


async def sync_rate(urls: list[str], key: str, name: str, seconds: float, concurrency: int) -> float:
    body = {"args": {"text": "hello"}, "return_pickled": False}
    clients = [httpx.AsyncClient(base_url=u, auth=(key, ""), timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) for u in urls]
    done = 0
    stop = time.monotonic() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        client = clients[i % len(clients)]
        while time.monotonic() < stop:
            reply = await client.post(f"/v1/sync-tasks?model_endpoint_name={name}", json=body)
            assert reply.status_code == 200, reply.text
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    return done / elapsed


async def async_rate(urls: list[str], key: str, name: str, tasks: int, concurrency: int) -> float:
    body = {"args": {"text": "hello"}, "return_pickled": False}
    clients = [httpx.AsyncClient(base_url=u, auth=(key, ""), timeout=90,
                                 limits=httpx.Limits(max_connections=concurrency)) for u in urls]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        client = clients[i % len(clients)]
        async with gate:
            reply = await client.post(f"/v1/async-tasks?model_endpoint_name={name}", json=body)
            assert reply.status_code == 200, reply.text
            task_id = reply.json()["task_id"]
        while True:
            async with gate:
                state = (await client.get(f"/v1/async-tasks/{task_id}?wait=30")).json()
            if state["status"] != "PENDING":
                assert state["status"] == "SUCCESS", state
                return

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    return tasks / elapsed


def measure(label: str, gateways: list[Gateway], data: Path, args: argparse.Namespace) -> dict[str, Any]:
    key, sync_name, async_name = deploy(gateways, data)
    urls = [g.url for g in gateways]
    sync = asyncio.run(sync_rate(urls, key, sync_name, args.seconds, args.concurrency))
    tasks = asyncio.run(async_rate(urls, key, async_name, args.tasks, args.concurrency))
    print(f"  {label:<12} sync {sync:8.0f} req/s   async {tasks:8.0f} tasks/s", flush=True)
    return {"label": label, "sync": sync, "async": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="launch-bench-scaleout-"))
    results = []
    runs: list[tuple[str, int, dict[str, str]]] = [("embedded", 1, {})]
    if os.environ.get("LAUNCH_TEST_DATABASE_URL"):
        name = "b" + hashlib.sha256(secrets.token_bytes(8)).hexdigest()[:12]
        runs += [("engines", 1, engines(name)), ("2 gateways", 2, engines(name + "x"))]
    else:
        print("no engines (scripts/engines start; . .engines/env): embedded only")
    print(f"concurrency {args.concurrency}, sync for {args.seconds:g} s, {args.tasks} async tasks")
    for label, count, env in runs:
        data = root / label.replace(" ", "-")
        env = {**env, "LAUNCH_SECRET": secrets.token_hex(32)}
        gateways = []
        try:
            for _ in range(count):
                gateways.append(Gateway(data, env))
            results.append(measure(label, gateways, data, args))
        finally:
            for gateway in gateways:
                gateway.stop()
    base = results[0]
    print("\nagainst embedded (same run):")
    for result in results[1:]:
        print(f"  {result['label']:<12} sync {result['sync'] / base['sync']:6.2f}x   "
              f"async {result['async'] / base['async']:6.2f}x")


if __name__ == "__main__":
    main()
