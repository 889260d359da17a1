"""The server process itself: SIGTERM stops it (and its workers) promptly and cleanly; tasks accepted before a
SIGKILL or a SIGTERM are completed after a restart on the same data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launch import EndpointRequest, LaunchClient
from tests.conftest import LAUNCH, RunningServer, free_port, start_server
from tests.e2e import models
from tests.e2e.helpers import SMALL, gone, parent_of, record, task, unique, wait_status, wait_until, worker_pids
from tests.engines import SCALE_OUT, local_workers_only

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FAST_LEASES = {"LAUNCH_TASK_LEASE_SECONDS": "2"}  # orphaned RUNNING tasks are re-queued within seconds


def deploy(client: LaunchClient, kind: str, **settings: Any) -> Any:
    bundle = client.create_model_bundle(unique("life"), {}, predict_fn_or_cls=models.toolbox)
    endpoint = client.create_model_endpoint(unique(f"life-{kind}"), bundle, endpoint_type=kind,
                                            **{**SMALL, **settings})
    wait_status(endpoint, "READY")
    return endpoint


def slow(seconds: float, tag: int) -> EndpointRequest:
    return EndpointRequest(args={"op": "sleep", "x": seconds + tag / 1000}, return_pickled=False)


def finished_correctly(client: LaunchClient, futures: list[Any], seconds: float) -> None:
    for tag, future in enumerate(futures):
        response = future.get(timeout=60)
        assert response.status == "SUCCESS", (tag, response.traceback)
        assert json.loads(response.result)["slept"] == seconds + tag / 1000


@dataclass
class Terminated:
    server: RunningServer
    client: LaunchClient
    seconds: float
    exit_code: int
    workers: list[int]
    futures: list[Any]


@pytest.fixture(scope="module")
def terminated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminated]:
    """A server with a sync and an async endpoint and a running task, stopped with SIGTERM."""
    server = start_server(tmp_path_factory.mktemp("sigterm"), None, env=FAST_LEASES)
    try:
        client = LaunchClient(api_key=server.key("frank"), endpoint=server.url)
        deploy(client, "sync")
        async_endpoint = deploy(client, "async", per_worker=1)
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        futures = [async_endpoint.predict(slow(1.5, tag)) for tag in range(3)]
        wait_until(lambda: task(client, futures[0].async_task_id)["attempts"] > 0, 10, "a running task")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=60)
        yield Terminated(server, client, time.monotonic() - started, exit_code, workers, futures)
    finally:
        if server.process.poll() is None:
            server.process.kill()


@local_workers_only
def test_sigterm_stops_within_a_few_seconds(terminated: Terminated) -> None:
    assert terminated.seconds < 10, terminated.server.log()[-2000:]


@local_workers_only
def test_sigterm_stops_every_worker(terminated: Terminated) -> None:
    still_running = [pid for pid in terminated.workers if not gone(pid)]
    assert not still_running


@local_workers_only
def test_sigterm_exit_code_is_zero(terminated: Terminated) -> None:
    assert terminated.exit_code == 0


@local_workers_only
def test_sigterm_then_restart_completes_every_accepted_task(terminated: Terminated) -> None:
    server = terminated.server
    restarted = start_server(server.data_dir, int(server.url.rsplit(":", 1)[1]), env=FAST_LEASES)
    try:
        finished_correctly(terminated.client, terminated.futures, 1.5)
    finally:
        restarted.stop()


def test_sigkill_then_restart_completes_every_accepted_task(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("sigkill")
    server = start_server(data_dir, None, env=FAST_LEASES)
    port = int(server.url.rsplit(":", 1)[1])
    restarted = None
    try:
        client = LaunchClient(api_key=server.key("grace"), endpoint=server.url)
        sync_endpoint = deploy(client, "sync")
        async_endpoint = deploy(client, "async", per_worker=1)
        workers = worker_pids(server.process.pid)
        futures = [async_endpoint.predict(slow(0.5, tag)) for tag in range(6)]
        wait_until(lambda: task(client, futures[0].async_task_id)["attempts"] > 0, 10, "a running task")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        wait_until(lambda: all(gone(pid) for pid in workers), 10, "the workers to die with the server")

        restarted = start_server(data_dir, port, env=FAST_LEASES)
        finished_correctly(client, futures, 0.5)
        assert task(client, futures[0].async_task_id)["attempts"] >= 2, "the task running at the kill ran again"
        wait_status(sync_endpoint, "READY", 60)  # endpoints come back with the server
        response = sync_endpoint.predict(EndpointRequest(args={"x": 5}, return_pickled=False))
        assert response.status == "SUCCESS" and json.loads(response.result) == {"y": 10}
        assert record(client, async_endpoint.model_endpoint.name)["status"] == "READY"
    finally:
        for running in (server, restarted):
            if running is not None and running.process.poll() is None:
                running.stop()


def worker_socket(pid: int) -> Path:
    """The Unix socket a worker listens on, as the server sees it: from the spec JSON on its command line,
    and, for a sandboxed worker, the host directory the sandbox binds at the socket's directory."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    spec = json.loads(next(arg for arg in args if arg.startswith(b"{")))
    path = Path(spec["listen"].removeprefix("unix:"))
    ancestor = parent_of(pid)
    while ancestor and ancestor > 1:
        argv = [a.decode() for a in Path(f"/proc/{ancestor}/cmdline").read_bytes().split(b"\0")]
        if argv and argv[0].endswith("bwrap"):
            host = next(argv[i + 1] for i in range(len(argv) - 2)
                        if argv[i] == "--bind" and argv[i + 2] == str(path.parent))
            return Path(host) / path.name
        ancestor = parent_of(ancestor)
    return path


@local_workers_only
def test_sigterm_on_an_idle_server_removes_its_worker_sockets(tmp_path: Path) -> None:
    server = start_server(tmp_path / "idle")
    client = LaunchClient(api_key=server.key("heidi"), endpoint=server.url)
    deploy(client, "sync")
    (worker,) = worker_pids(server.process.pid)
    socket = worker_socket(worker)
    assert socket.exists()
    assert server.stop(timeout=30) in (0, -signal.SIGTERM)  # the exit code has its own test
    assert gone(worker)
    assert not socket.exists() and not socket.parent.exists()


@pytest.mark.skipif(SCALE_OUT, reason="with a shared broker, several gateways on one deployment are the point")
def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        second = subprocess.run(
            [LAUNCH, "server", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 2
        assert "already running" in second.stdout + second.stderr
        assert first.process.poll() is None, "the first server keeps running"
    finally:
        first.stop()
