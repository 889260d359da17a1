"""The fault test with callbacks on: 2,000 async tasks while workers are SIGKILLed again and again and the
server itself is SIGKILLed and restarted. Every accepted task must end SUCCESS with its own result, and
every callback must arrive; callbacks delivered twice (at-least-once) are counted and reported."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import SMALL, gone, unique, wait_until, worker_pids
from tests.e2e.receivers import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
TASKS = 2000
WORKER_KILLS = 10
ENV = {"LAUNCH_TASK_LEASE_SECONDS": "2", "LAUNCH_TASK_MAX_ATTEMPTS": "20",
       "LAUNCH_CALLBACK_RETRY_BASE_SECONDS": "0.2"}


def seconds(i: int) -> float:
    return 0.02 + i * 1e-7  # each task's result names it


def test_nothing_lost_and_every_callback_delivered(tmp_path: Path) -> None:
    receiver = Receiver(0).start()
    data_dir = tmp_path / "data"
    server: RunningServer | None = start_server(data_dir, None, env=ENV)
    assert server is not None
    port = int(server.url.rsplit(":", 1)[1])
    url = server.url
    key = server.key("chaos")
    servers = [server]
    try:
        from launch import LaunchClient

        client = LaunchClient(api_key=key, endpoint=url)
        bundle = client.create_model_bundle(unique("chaos"), {}, predict_fn_or_cls=models.toolbox)
        name = unique("chaos-ep")
        with httpx.Client(base_url=url, auth=(key, ""), timeout=30, trust_env=False) as api:
            created = api.post("/v1/model-endpoints", json={
                "name": name, "bundle_name": bundle.name, "endpoint_type": "async", **SMALL,
                "min_workers": 2, "max_workers": 2, "per_worker": 8, "default_callback_url": receiver.url})
            assert created.status_code == 200, created.text
            endpoint_id = created.json()["id"]
            # generous: on Ray the first worker waits for the client proxy, which may take several tries
            wait_until(lambda: api.get(f"/v1/model-endpoints/{name}").json()["status"] == "READY", 150, "READY")

        def available(running: RunningServer) -> int:
            with httpx.Client(base_url=running.url, auth=(key, ""), timeout=10, trust_env=False) as api:
                return int(api.get(f"/v1/model-endpoints/{name}").json()["worker_settings"]["available_workers"])

        ids: dict[int, str] = {}
        lock = threading.Lock()

        def submit(i: int) -> None:
            """Submit until accepted: a lost answer is repeated with the same Idempotency-Key."""
            body = {"args": {"op": "sleep", "x": seconds(i)}, "return_pickled": False}
            with httpx.Client(base_url=url, auth=(key, ""), timeout=10, trust_env=False) as http:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        response = http.post("/v1/async-tasks", params={"model_endpoint_name": name}, json=body,
                                             headers={"Idempotency-Key": f"chaos-{i}"})
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    if response.status_code == 200:
                        with lock:
                            ids[i] = response.json()["task_id"]
                        return
                    assert response.status_code in (429, 503), response.text
                    time.sleep(0.2)
            raise AssertionError(f"task {i} was never accepted")

        def submit_range(start: int, stop: int) -> None:
            for i in range(start, stop):
                submit(i)

        with ThreadPoolExecutor(8) as pool:
            step = TASKS // 8
            jobs = [pool.submit(submit_range, n * step, (n + 1) * step) for n in range(8)]
            kills = 0
            restarted = False
            while kills < WORKER_KILLS or not restarted:
                time.sleep(0.6)
                if kills == WORKER_KILLS // 2 and not restarted:
                    running = servers[-1]
                    workers = worker_pids(running.process.pid, endpoint_id)
                    os.kill(running.process.pid, signal.SIGKILL)  # the server itself, mid-flight
                    running.process.wait(timeout=10)
                    wait_until(lambda w=workers: all(gone(p) for p in w), 15, "the workers to die with it")
                    servers.append(start_server(data_dir, port, env=ENV))
                    restarted = True
                    continue
                if kills < WORKER_KILLS:  # kill serving workers only (one still loading is an endpoint failure)
                    def serving() -> list[int]:  # the record may still show a killed server's workers
                        pids = worker_pids(servers[-1].process.pid, endpoint_id)
                        return pids if len(pids) == 2 and available(servers[-1]) == 2 else []

                    pids = wait_until(serving, 120, "both workers serving again")
                    os.kill(pids[kills % len(pids)], signal.SIGKILL)
                    kills += 1
            for job in jobs:
                job.result()
        assert len(ids) == TASKS

        with httpx.Client(base_url=url, auth=(key, ""), timeout=30, trust_env=False) as api:
            def outcome(i: int) -> dict[str, object]:
                while True:
                    view = api.get(f"/v1/async-tasks/{ids[i]}", params={"wait": 20}).json()
                    if view["status"] not in ("PENDING", "STARTED"):
                        return dict(view)

            lost = []
            for i in range(TASKS):
                view = outcome(i)
                if view["status"] != "SUCCESS" or json.loads(str(view["result"]))["slept"] != seconds(i):
                    lost.append((i, view))
            assert not lost, lost[:5]

        task_ids = set(ids.values())
        wait_until(lambda: task_ids <= {d.headers["launch-task-id"] for d in receiver.deliveries}, 120,
                   "every callback")
        time.sleep(1.0)
        counts = Counter(d.headers["launch-task-id"] for d in receiver.deliveries)
        twice = sum(1 for task_id in task_ids if counts[task_id] > 1)
        assert all(d.json["status"] == "SUCCESS" for d in receiver.deliveries)
        print(f"\nchaos: {TASKS} tasks, {WORKER_KILLS} worker SIGKILLs, 1 server SIGKILL + restart: 0 lost, "
              f"{len(task_ids)} callbacks delivered, {twice} delivered more than once "
              f"({sum(counts.values()) - len(task_ids)} extra deliveries)")
    finally:
        receiver.stop()
        for running in servers:
            if running.process.poll() is None:
                running.stop()
