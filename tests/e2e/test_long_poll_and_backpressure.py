"""Long-polling a task (``?wait=``) answers when the task ends, not later; a full queue answers 429."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from launch import APIError, EndpointRequest, LaunchClient
from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import deployed, http, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def async_toolbox(alice: LaunchClient, toolbox_bundle: Any) -> Iterator[Any]:
    """An async endpoint of its own: timings here must not wait behind other modules' queued tasks."""
    with deployed(alice, toolbox_bundle, "async", per_worker=4) as endpoint:
        yield endpoint


def test_long_poll_answers_when_the_task_ends(alice: LaunchClient, alice_key: str, server: RunningServer,
                                              async_toolbox: Any) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"op": "sleep", "x": 0.5}, return_pickled=False))
    with http(server.url, alice_key) as api:
        start = time.monotonic()
        body = api.get(f"/v1/async-tasks/{future.async_task_id}", params={"wait": 20}).json()
        elapsed = time.monotonic() - start
    assert body["status"] == "SUCCESS", body
    assert 0.3 < elapsed < 5, f"answered after {elapsed:.2f} s: it must wait for the end, and no longer"


def test_long_poll_gives_up_after_the_wait(alice_key: str, server: RunningServer, async_toolbox: Any) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"op": "sleep", "x": 3}, return_pickled=False))
    with http(server.url, alice_key) as api:
        start = time.monotonic()
        body = api.get(f"/v1/async-tasks/{future.async_task_id}", params={"wait": 0.5}).json()
        elapsed = time.monotonic() - start
        assert body["status"] in ("PENDING", "STARTED")
        assert 0.4 < elapsed < 2.5, elapsed
        for bad in ("-1", "61", "soon"):
            response = api.get(f"/v1/async-tasks/{future.async_task_id}", params={"wait": bad})
            assert response.status_code == 422 and "wait" in response.json()["detail"], response.text
    assert future.get(timeout=30).status == "SUCCESS"


def test_future_get_timeout_is_honoured(async_toolbox: Any) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"op": "sleep", "x": 3}, return_pickled=False))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        future.get(timeout=0.5)
    assert time.monotonic() - start < 2.5
    assert future.get(timeout=30).status == "SUCCESS"


@pytest.fixture(scope="module")
def small_queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("queue"), None, env={"LAUNCH_MAX_QUEUED_TASKS": "3"})
    yield running
    running.stop()


def test_full_queue_answers_429_and_accepts_again_once_drained(small_queue_server: RunningServer) -> None:
    key = small_queue_server.key("carol")
    client = LaunchClient(api_key=key, endpoint=small_queue_server.url)
    bundle = client.create_model_bundle(unique("slow"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    with deployed(client, bundle, "async", per_worker=1) as endpoint, \
            http(small_queue_server.url, key) as api:
        name = endpoint.model_endpoint.name
        statuses = [
            api.post("/v1/async-tasks", params={"model_endpoint_name": name},
                     json={"args": {"op": "sleep", "x": 0.3}, "return_pickled": False}).status_code
            for _ in range(8)
        ]
        assert statuses[:4] == [200] * 4, statuses  # one running, three queued
        assert 429 in statuses, statuses
        refused = api.post("/v1/async-tasks", params={"model_endpoint_name": name},
                           json={"args": {"x": 1}, "return_pickled": False})
        if refused.status_code == 429:
            assert "retry later" in refused.json()["detail"]
        # the SDK retries 429 with backoff, so a submission succeeds once the queue drains
        future = endpoint.predict(EndpointRequest(args={"x": 21}, return_pickled=False))
        assert future.get(timeout=30).result == '{"y": 42}'
    with pytest.raises(APIError) as info:
        client.get_model_bundle("no-such-bundle")
    assert info.value.status_code == 404
