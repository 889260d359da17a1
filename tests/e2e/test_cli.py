"""The ``launch`` command against the real server: API keys, bundles, endpoints and tasks."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import httpx
import pytest

from launch import AsyncEndpoint, EndpointRequest, SyncEndpoint
from tests.conftest import LAUNCH, RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def launch(*args: str, key: str | None, server: RunningServer) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCH_")}
    env.update({"LAUNCH_ENDPOINT": server.url, "COLUMNS": "250", "NO_COLOR": "1"})
    if key is not None:
        env["LAUNCH_API_KEY"] = key
    return subprocess.run([LAUNCH, *args], env=env, capture_output=True, text=True, timeout=60)


def engine_flags(server: RunningServer) -> list[str]:
    """The server's engines as `launch api-keys` flags (none on the embedded defaults)."""
    flags = {"LAUNCH_DATABASE_URL": "--database", "LAUNCH_BROKER_URL": "--broker"}
    return [part for name, value in server.engines.items() if name in flags for part in (flags[name], value)]


def test_api_keys_create_prints_the_key_last(server: RunningServer) -> None:
    out = subprocess.run([LAUNCH, "api-keys", "create", "--user", "erin", "--data-dir", str(server.data_dir),
                          *engine_flags(server)], capture_output=True, text=True, timeout=60, check=True)
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("lk_") and len(key) > 30
    assert key not in out.stderr
    assert httpx.get(server.url + "/v1/model-bundles", auth=(key, ""), timeout=10).status_code == 200


def test_api_keys_create_refuses_a_bad_user_name(server: RunningServer) -> None:
    out = subprocess.run([LAUNCH, "api-keys", "create", "--user", "not a name", "--data-dir",
                          str(server.data_dir), *engine_flags(server)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "lk_" not in out.stdout


def test_bundles_list_json(server: RunningServer, alice_key: str, toolbox_bundle: Any) -> None:
    out = launch("bundles", "list", "--json", key=alice_key, server=server)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    mine = [r for r in rows if r["name"] == toolbox_bundle.name]
    assert len(mine) == 1
    assert mine[0]["packaging_type"] == "cloudpickle" and mine[0]["bundle_id"] == toolbox_bundle.bundle_id


def test_bundles_list_is_per_owner(server: RunningServer, bob_key: str, toolbox_bundle: Any) -> None:
    out = launch("bundles", "list", "--json", key=bob_key, server=server)
    assert out.returncode == 0, out.stderr
    assert toolbox_bundle.bundle_id not in {r["bundle_id"] for r in json.loads(out.stdout)}


def test_endpoints_list_table(server: RunningServer, alice_key: str, sync_toolbox: SyncEndpoint,
                              async_toolbox: AsyncEndpoint) -> None:
    out = launch("endpoints", "list", key=alice_key, server=server)
    assert out.returncode == 0, out.stderr
    lines = {line for line in out.stdout.splitlines() if sync_toolbox.model_endpoint.name in line}
    assert len(lines) == 1
    (line,) = lines
    assert "sync" in line and "READY" in line and sync_toolbox.model_endpoint.bundle_name in line
    assert async_toolbox.model_endpoint.name in out.stdout


def test_endpoints_get_json(server: RunningServer, alice_key: str, sync_toolbox: SyncEndpoint) -> None:
    out = launch("endpoints", "get", sync_toolbox.model_endpoint.name, "--json", key=alice_key, server=server)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["name"] == sync_toolbox.model_endpoint.name
    assert row["status"] == "READY" and row["endpoint_type"] == "sync"
    assert row["worker_settings"]["available_workers"] >= 1


def test_endpoints_get_unknown_fails_readably(server: RunningServer, alice_key: str) -> None:
    out = launch("endpoints", "get", "no-such-endpoint-xyz", "--json", key=alice_key, server=server)
    assert out.returncode == 1
    assert "404" in out.stdout + out.stderr


def test_tasks_get_json(server: RunningServer, alice_key: str, async_toolbox: AsyncEndpoint) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"x": 12}, return_pickled=False))
    future.get(timeout=30)
    out = launch("tasks", "get", future.async_task_id, "--json", key=alice_key, server=server)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["task_id"] == future.async_task_id
    assert row["status"] == "SUCCESS" and json.loads(row["result"]) == {"y": 24}


def test_tasks_of_another_owner_are_not_found(server: RunningServer, bob_key: str,
                                              async_toolbox: AsyncEndpoint) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"x": 1}))
    out = launch("tasks", "get", future.async_task_id, "--json", key=bob_key, server=server)
    assert out.returncode == 1 and "404" in out.stdout + out.stderr


def test_missing_or_wrong_key(server: RunningServer) -> None:
    missing = launch("bundles", "list", key=None, server=server)
    assert missing.returncode == 2 and "API key" in missing.stdout + missing.stderr
    wrong = launch("bundles", "list", key="lk_wrong", server=server)
    assert wrong.returncode == 1 and "401" in wrong.stdout + wrong.stderr
