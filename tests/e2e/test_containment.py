"""A hostile tenant against the platform (issue: contain user code). Bob deploys a bundle that tries to read
the platform's data, reach other workers and the gateway, kill processes, exhaust memory and processes, hang,
and return too much; Alice's endpoint on the same server must be served throughout, and each attempt must fail
with a clear reason. Runs with the sandbox the project's scripts install (bubblewrap) and cgroups."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch import EndpointRequest, LaunchClient
from launch.errors import APIError
from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import deployed, record, unique, wait_until, worker_pids
from tests.engines import local_workers_only

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
              local_workers_only]
RESULT_CAP = 10 * 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("contained"), env={
        "LAUNCH_SYNC_TIMEOUT_SECONDS": "4", "LAUNCH_MAX_RESULT_BYTES": str(RESULT_CAP),
        "LAUNCH_WORKER_PIDS_LIMIT": "64", "LAUNCH_SANDBOX": "required",
    })
    yield running
    running.stop()


@pytest.fixture(scope="module")
def alice(server: RunningServer) -> Iterator[Any]:
    """Alice's sync endpoint, and a thread that calls it every 20 ms for the whole module, recording failures."""
    client = LaunchClient(api_key=server.key("alice"), endpoint=server.url)
    bundle = client.create_model_bundle(unique("alice"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    with deployed(client, bundle, "sync", per_worker=4) as endpoint:
        failures: list[str] = []
        calls = [0]
        stop = threading.Event()

        def steady() -> None:
            while not stop.is_set():
                try:
                    response = endpoint.predict(EndpointRequest(args={"x": 3}, return_pickled=False))
                    if response.status != "SUCCESS" or json.loads(response.result)["y"] != 6:
                        failures.append(repr(response))
                except Exception as exc:
                    failures.append(repr(exc))
                calls[0] += 1
                stop.wait(0.02)

        thread = threading.Thread(target=steady, daemon=True)
        thread.start()
        yield endpoint, record(client, endpoint.model_endpoint.name), failures, calls
        stop.set()
        thread.join(timeout=30)
        assert not failures, f"alice saw {len(failures)} failures while bob misbehaved: {failures[:3]}"
        assert calls[0] > 50


@pytest.fixture(scope="module")
def bob(server: RunningServer, alice: Any) -> Iterator[Any]:
    client = LaunchClient(api_key=server.key("bob"), endpoint=server.url)
    bundle = client.create_model_bundle(unique("bob"), {}, predict_fn_or_cls=models.hostile, requirements=[])
    with deployed(client, bundle, "sync", max_workers=1, per_worker=4, memory="512Mi") as endpoint:
        yield endpoint


def attempt(endpoint: Any, action: str, arg: Any = None) -> Any:
    response = endpoint.predict(EndpointRequest(args={"action": action, "arg": arg}, return_pickled=False))
    assert response.status == "SUCCESS", response.traceback
    return json.loads(response.result)


def test_user_code_sees_none_of_the_platforms_data(server: RunningServer, bob: Any) -> None:
    for secret in ("secret.key", "launch.db", "objects"):
        assert attempt(bob, "read", str(server.data_dir / secret)).startswith(("FileNotFoundError", "IsADirectory"))
    assert attempt(bob, "listdir", str(server.data_dir)).startswith("FileNotFoundError")
    assert attempt(bob, "listdir", "/tmp") == []
    assert attempt(bob, "read", "/etc/shadow").startswith(("FileNotFoundError", "PermissionError"))
    names = set(attempt(bob, "env"))
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PWD"}, names
    assert attempt(bob, "whoami")["uid"] != 0


def test_user_code_cannot_reach_other_workers_or_the_gateway(server: RunningServer, alice: Any, bob: Any) -> None:
    (alice_worker,) = worker_pids(server.process.pid, alice[1]["id"])
    alice_socket = next(Path(f"/proc/{alice_worker}/root/launch/sock").iterdir())  # seen from the host
    host_socket_dirs = [p for p in Path("/tmp").glob("launch-sockets-*")]
    assert host_socket_dirs, "the server keeps worker sockets under /tmp"
    for target in [str(alice_socket), *(str(d) for d in host_socket_dirs)]:
        result = attempt(bob, "connect_unix", f"{target}/worker.sock" if "sockets" in target else target)
        assert result.startswith(("FileNotFoundError", "ConnectionRefused")), result
    port = server.url.rsplit(":", 1)[1]
    # its own network namespace: its loopback has nothing listening, the host's is out of reach
    assert attempt(bob, "connect_tcp", port).startswith(("OSError", "ConnectionRefused")), "the gateway is reachable"


def test_user_code_cannot_kill_the_gateway_or_other_workers(server: RunningServer, alice: Any, bob: Any) -> None:
    (alice_worker,) = worker_pids(server.process.pid, alice[1]["id"])
    for pid in (server.process.pid, alice_worker, 1):
        result = attempt(bob, "kill", pid)
        assert result.startswith(("ProcessLookupError", "PermissionError")) or result == "sent", result
    # kill(-1): only what its own uid runs in its own PID namespace (here: nothing but itself, which is spared)
    assert attempt(bob, "kill_everything") in ("sent", "ProcessLookupError: [Errno 3] No such process")
    time.sleep(0.5)
    assert server.process.poll() is None
    assert worker_pids(server.process.pid, alice[1]["id"]) == [alice_worker]


def test_memory_over_the_limit_kills_only_that_worker_with_a_reason(server: RunningServer, bob: Any) -> None:
    with pytest.raises(APIError) as failed:
        attempt(bob, "alloc", 2048)
    assert failed.value.status_code == 502
    assert "exceeded its memory limit of 512Mi" in failed.value.detail, failed.value.detail
    wait_until(lambda: _serves(bob), 60, "bob's endpoint to serve again with a new worker")
    assert server.process.poll() is None


def test_a_fork_storm_is_bounded(server: RunningServer, bob: Any) -> None:
    made = attempt(bob, "fork_storm", 10_000)
    assert 0 < made < 64, made
    assert server.process.poll() is None


def test_a_hung_sync_request_times_out_and_its_worker_is_recycled(server: RunningServer, bob: Any) -> None:
    with pytest.raises(APIError) as failed:
        attempt(bob, "hang")
    assert failed.value.status_code in (408, 504) and "did not finish within 4 s" in failed.value.detail
    wait_until(lambda: _serves(bob), 60, "a replacement worker")


def test_a_result_over_the_cap_fails_with_the_setting_named(server: RunningServer, bob: Any) -> None:
    response = bob.predict(EndpointRequest(args={"action": "big_result", "arg": 5 * RESULT_CAP},
                                           return_pickled=False))
    assert response.status == "FAILURE" and "LAUNCH_MAX_RESULT_BYTES" in response.traceback
    assert _serves(bob)


def _serves(endpoint: Any) -> bool:
    try:
        return bool(attempt(endpoint, "whoami"))
    except APIError:
        return False
