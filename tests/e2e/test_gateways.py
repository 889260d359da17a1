"""Two gateways on one PostgreSQL + Redis + S3 (README: "Scale out"): any gateway serves any request, changes
reach the other at once, exactly one runs the control loop, and when it is killed the other takes over
without losing an accepted task. Needs the engines of ``scripts/engines start`` (skipped without them)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launch import EndpointRequest, LaunchClient
from tests.conftest import LAUNCH, RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import SMALL, http, task, unique, wait_status, wait_until
from tests.engines import engine_env

pytestmark = pytest.mark.skipif(not os.environ.get("LAUNCH_TEST_DATABASE_URL"),
                                reason="needs PostgreSQL, Redis and S3: scripts/engines start; . .engines/env")

# the keys' own recheck is slowed to a minute: what the other gateway learns at once, it learns from notifications
FAST = {"LAUNCH_CONTROL_LEASE_SECONDS": "2", "LAUNCH_TASK_LEASE_SECONDS": "3", "LAUNCH_API_KEY_RECHECK_SECONDS": "60"}


def leads(server: RunningServer) -> bool:
    return "this gateway runs the control loop" in server.log()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Gateways A (started first: it leads) and B, on different data dirs, sharing engines and the secret."""
    root = tmp_path_factory.mktemp("gateways")
    engines = engine_env(root / "a", "g" + uuid.uuid4().hex[:16], scale_out=True)
    env = {**FAST, "LAUNCH_SECRET": secrets.token_hex(32)}
    a = start_server(root / "a", None, "--log-level", "info", env=env, engines=engines)
    b = start_server(root / "b", None, "--log-level", "info", env=env, engines=engines)
    key = create_key(root / "a", engines, env, "alice")
    try:
        yield {"a": a, "b": b, "key": key, "engines": engines, "env": env, "root": root}
    finally:
        for server in (a, b):
            if server.process.poll() is None:
                server.stop()


def create_key(data_dir: Path, engines: dict[str, str], env: dict[str, str], user: str) -> str:
    out = subprocess.run([LAUNCH, "api-keys", "create", "--user", user, "--data-dir", str(data_dir)],
                         check=True, capture_output=True, text=True, env={**os.environ, **engines, **env})
    return out.stdout.strip().splitlines()[-1]


def test_an_endpoint_created_through_one_gateway_serves_through_the_other(deployment: dict[str, Any]) -> None:
    a, b, key = deployment["a"], deployment["b"], deployment["key"]
    assert leads(a) and not leads(b), "the first gateway holds the control-loop lease"
    through_a = LaunchClient(api_key=key, endpoint=a.url)
    through_b = LaunchClient(api_key=key, endpoint=b.url)
    bundle = through_a.create_model_bundle(unique("gw"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    name = unique("gw-sync")
    through_a.create_model_endpoint(name, bundle, endpoint_type="sync", **SMALL, per_worker=4)
    endpoint_b = through_b.get_model_endpoint(name)
    assert endpoint_b is not None
    wait_status(endpoint_b, "READY", timeout=90)
    for i in range(20):  # B reaches A's worker in one hop, from the published ready workers
        response = endpoint_b.predict(EndpointRequest(args={"x": i}, return_pickled=False))
        assert response.status == "SUCCESS", response.traceback
        assert json.loads(response.result) == {"y": 2 * i}
    # an edit through B is seen by A at once (its endpoint cache was told)
    with http(b.url, key) as client:
        assert client.put(f"/v1/model-endpoints/{name}", json={"per_worker": 3}).status_code == 200
    with http(a.url, key) as client:
        assert client.get(f"/v1/model-endpoints/{name}").json()["per_worker"] == 3


def test_a_new_key_is_accepted_by_the_other_gateway_at_once(deployment: dict[str, Any]) -> None:
    """B answered 401 for a key that did not exist yet (and caches that answer); once created, B accepts it
    without waiting out its cache: the CLI's change notification reached it."""
    b = deployment["b"]
    user = unique("carol")
    with http(b.url, "lk_not-yet-a-key") as client:
        assert client.get("/v1/model-bundles").status_code == 401
    key = create_key(deployment["root"] / "a", deployment["engines"], deployment["env"], user)
    with http(b.url, key) as client:
        assert client.get("/v1/model-bundles").status_code == 200


def test_a_key_revoked_is_refused_by_both_gateways_at_once(deployment: dict[str, Any]) -> None:
    a, b = deployment["a"], deployment["b"]
    key = create_key(deployment["root"] / "a", deployment["engines"], deployment["env"], unique("dave"))
    for server in (a, b):  # both have the key cached now
        with http(server.url, key) as client:
            assert client.get("/v1/model-bundles").status_code == 200
    out = subprocess.run([LAUNCH, "api-keys", "revoke", key, "--data-dir", str(deployment["root"] / "b")],
                         capture_output=True, text=True, env={**os.environ, **deployment["engines"],
                                                              **deployment["env"]})
    assert out.returncode == 0, out.stderr
    for server in (a, b):
        with http(server.url, key) as client:
            wait_until(lambda client=client: client.get("/v1/model-bundles").status_code == 401, 2.0,
                       f"the revoked key refused by {server.url}")


def test_async_tasks_survive_the_death_of_the_leader_and_the_control_loop_fails_over(
        deployment: dict[str, Any]) -> None:
    a, b, key = deployment["a"], deployment["b"], deployment["key"]
    through_a = LaunchClient(api_key=key, endpoint=a.url)
    through_b = LaunchClient(api_key=key, endpoint=b.url)
    bundle = through_a.create_model_bundle(unique("gw-async"), {}, predict_fn_or_cls=models.toolbox,
                                           requirements=[])
    async_name, sync_name = unique("gw-async"), unique("gw-sync2")
    through_b.create_model_endpoint(async_name, bundle, endpoint_type="async", **SMALL, per_worker=2)
    through_b.create_model_endpoint(sync_name, bundle, endpoint_type="sync", **SMALL, per_worker=2)
    wait_status(through_b.get_model_endpoint(async_name), "READY", timeout=90)
    wait_status(through_b.get_model_endpoint(sync_name), "READY", timeout=90)
    with http(b.url, key) as client:
        submitted = []
        for _ in range(30):  # slow enough that some run, some wait, when A dies
            reply = client.post(f"/v1/async-tasks?model_endpoint_name={async_name}",
                                json={"args": {"op": "sleep", "x": 0.2}, "return_pickled": False})
            assert reply.status_code == 200, reply.text
            submitted.append(reply.json()["task_id"])
        time.sleep(1.0)
        a.stop(signal.SIGKILL)  # the leader dies with its workers and its leases
        # B takes the lease within seconds, starts workers, requeues: every task ends, and ends well
        deadline = time.monotonic() + 120
        pending = set(submitted)
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                record = task(through_b, task_id)
                if record["status"] not in ("PENDING", "STARTED"):  # STARTED: running, not ended
                    assert record["status"] == "SUCCESS", record
                    pending.discard(task_id)
            time.sleep(0.5)
        assert not pending, f"{len(pending)} of {len(submitted)} tasks never finished after the failover"
    assert leads(b), "gateway B took over the control loop"
    wait_until(lambda: _serves(b.url, key, sync_name), 60, "gateway B serving sync requests on its own workers")


def _serves(url: str, key: str, name: str) -> bool:
    try:
        with http(url, key) as client:
            reply = client.post(f"/v1/sync-tasks?model_endpoint_name={name}",
                                json={"args": {"x": 4}, "return_pickled": False})
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and json.loads(reply.json().get("result") or "null") == {"y": 8}
