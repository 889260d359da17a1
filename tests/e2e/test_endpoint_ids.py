"""Endpoints are addressed by name or by id (as in Launch's v1 API), and an id never reaches another owner's
endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.e2e.helpers import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_tasks_and_records_by_endpoint_id(server: RunningServer, alice_key: str, bob_key: str,
                                          sync_toolbox: Any, async_toolbox: Any) -> None:
    with http(server.url, alice_key) as alice, http(server.url, bob_key) as bob:
        sync_id = alice.get(f"/v1/model-endpoints/{sync_toolbox.model_endpoint.name}").json()["id"]
        async_id = alice.get(f"/v1/model-endpoints/{async_toolbox.model_endpoint.name}").json()["id"]
        record = alice.get(f"/v1/model-endpoints/{sync_id}").json()
        assert record["name"] == sync_toolbox.model_endpoint.name

        body = {"args": {"x": 4}, "return_pickled": False}
        sync = alice.post("/v1/sync-tasks", params={"model_endpoint_id": sync_id}, json=body)
        assert sync.status_code == 200 and sync.json() == {"status": "SUCCESS", "result": '{"y": 8}'}
        submitted = alice.post("/v1/async-tasks", params={"model_endpoint_id": async_id}, json=body)
        assert submitted.status_code == 200, submitted.text
        done = alice.get(f"/v1/async-tasks/{submitted.json()['task_id']}", params={"wait": 30}).json()
        assert done["status"] == "SUCCESS" and done["result"] == '{"y": 8}'

        for response in (bob.get(f"/v1/model-endpoints/{sync_id}"),
                         bob.post("/v1/sync-tasks", params={"model_endpoint_id": sync_id}, json=body)):
            assert response.status_code == 404, response.text
        missing = alice.post("/v1/sync-tasks", json=body)
        assert missing.status_code == 422 and "model_endpoint_name" in missing.json()["detail"]
