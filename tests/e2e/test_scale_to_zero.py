"""``min_workers=0``: an idle endpoint scales to zero workers, and a sync request or an async task wakes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from launch import EndpointRequest, LaunchClient
from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import SMALL, record, unique, wait_status, wait_until, worker_pids
from tests.engines import local_workers_only

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), local_workers_only]


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("zero"), None, env={"LAUNCH_SCALE_TO_ZERO_AFTER_SECONDS": "1"})
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def client(quick_server: RunningServer) -> LaunchClient:
    return LaunchClient(api_key=quick_server.key("ivan"), endpoint=quick_server.url)


def scaled_to_zero(client: LaunchClient, server: RunningServer, kind: str) -> tuple[Any, str]:
    bundle = client.create_model_bundle(unique("zero"), {}, predict_fn_or_cls=models.toolbox)
    endpoint = client.create_model_endpoint(unique(f"zero-{kind}"), bundle, endpoint_type=kind, min_workers=0,
                                            max_workers=1, **SMALL)
    wait_status(endpoint, "READY")  # one worker proves the bundle loads
    endpoint_id = record(client, endpoint.model_endpoint.name)["id"]
    wait_until(lambda: not worker_pids(server.process.pid, endpoint_id), 20, "the idle endpoint to reach zero")
    assert endpoint.status() == "READY"
    assert endpoint.worker_settings()["available_workers"] == 0
    return endpoint, endpoint_id


def test_sync_request_wakes_an_endpoint_at_zero(client: LaunchClient, quick_server: RunningServer) -> None:
    endpoint, endpoint_id = scaled_to_zero(client, quick_server, "sync")
    response = endpoint.predict(EndpointRequest(args={"x": 4}, return_pickled=False))
    assert response.status == "SUCCESS" and json.loads(response.result) == {"y": 8}
    assert len(worker_pids(quick_server.process.pid, endpoint_id)) == 1


def test_async_task_wakes_an_endpoint_at_zero(client: LaunchClient, quick_server: RunningServer) -> None:
    endpoint, endpoint_id = scaled_to_zero(client, quick_server, "async")
    response = endpoint.predict(EndpointRequest(args={"x": 5}, return_pickled=False)).get(timeout=60)
    assert response.status == "SUCCESS" and json.loads(response.result) == {"y": 10}
