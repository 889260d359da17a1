"""A bundle whose ``load_model_fn`` raises: the endpoint ends UPDATE_FAILED with a readable reason, the logs
hold the traceback, predictions get a clear 4xx at once (never a hang), and an edit recovers it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from launch import APIError, EndpointRequest, LaunchClient
from tests.conftest import RunningServer
from tests.e2e import models
from tests.e2e.helpers import http, record, task, unique, wait_status, wait_until, worker_pids

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def broken_bundle(alice: LaunchClient) -> Any:
    return alice.create_model_bundle(unique("broken"), {}, load_predict_fn=models.load_linear_predict,
                                     load_model_fn=models.load_broken_model)


@pytest.fixture(scope="module")
def failed_sync(alice: LaunchClient, broken_bundle: Any) -> Iterator[Any]:
    endpoint = alice.create_model_endpoint(unique("broken-sync"), broken_bundle, cpus=1, memory="512Mi")
    wait_status(endpoint, "UPDATE_FAILED", 60)
    yield endpoint
    alice.delete_model_endpoint(endpoint)


def test_status_reason_says_why(alice: LaunchClient, failed_sync: Any) -> None:
    raw = record(alice, failed_sync.model_endpoint.name)
    assert raw["status"] == "UPDATE_FAILED"
    reason = raw["status_reason"]
    assert reason and "exited with code 3" in reason
    assert f"RuntimeError: weights file is corrupt ({models.MARKER})" in reason


def test_creation_logs_hold_the_traceback(alice: LaunchClient, failed_sync: Any) -> None:
    logs = alice.read_endpoint_creation_logs(failed_sync)
    assert "bundle failed to load" in logs and "Traceback" in logs
    assert "load_broken_model" in logs and models.MARKER in logs


def test_no_crash_loop(alice: LaunchClient, server: RunningServer, failed_sync: Any) -> None:
    endpoint_id = record(alice, failed_sync.model_endpoint.name)["id"]
    attempts_logged = alice.read_endpoint_creation_logs(failed_sync).count("bundle failed to load")
    time.sleep(2)
    assert worker_pids(server.process.pid, endpoint_id) == []
    assert alice.read_endpoint_creation_logs(failed_sync).count("bundle failed to load") == attempts_logged
    assert failed_sync.status() == "UPDATE_FAILED"


def test_sync_prediction_on_failed_endpoint_is_a_clear_409(alice: LaunchClient, failed_sync: Any) -> None:
    started = time.monotonic()
    with pytest.raises(APIError) as caught:
        failed_sync.predict(EndpointRequest(args={"x": 1}))
    assert time.monotonic() - started < 5
    assert caught.value.status_code == 409
    assert "failed to start" in caught.value.detail and models.MARKER in caught.value.detail


def test_async_submission_on_failed_endpoint_is_a_clear_409(alice: LaunchClient, broken_bundle: Any) -> None:
    endpoint = alice.create_model_endpoint(unique("broken-async"), broken_bundle, cpus=1, memory="512Mi",
                                           endpoint_type="async")
    try:
        wait_status(endpoint, "UPDATE_FAILED", 60)
        with pytest.raises(APIError) as caught:
            endpoint.predict(EndpointRequest(args={"x": 1}))
        assert caught.value.status_code == 409 and models.MARKER in caught.value.detail
    finally:
        alice.delete_model_endpoint(endpoint)


def test_sync_request_waiting_for_a_failing_endpoint_fails_fast(server: RunningServer, alice_key: str,
                                                                alice: LaunchClient, broken_bundle: Any) -> None:
    """A request sent while the endpoint still starts must end once the endpoint fails, not at the 110 s
    sync timeout."""
    name = unique("broken-waiting")
    alice.create_model_endpoint(name, broken_bundle, cpus=1, memory="512Mi")
    try:
        with http(server.url, alice_key, timeout=30) as client:
            started = time.monotonic()
            response = client.post("/v1/sync-tasks", params={"model_endpoint_name": name},
                                   json={"args": {"x": 1}})
            elapsed = time.monotonic() - started
        assert 400 <= response.status_code < 500, response.text
        assert models.MARKER in response.json()["detail"]
        assert elapsed < 20
    finally:
        alice.delete_model_endpoint(name)


def test_async_task_accepted_before_the_failure_ends_with_a_reason(alice: LaunchClient,
                                                                   broken_bundle: Any) -> None:
    """Accepted = succeeded + failed with a reason: a task queued while the endpoint was still starting must
    not stay PENDING forever once the endpoint has failed."""
    endpoint = alice.create_model_endpoint(unique("broken-queued"), broken_bundle, cpus=1, memory="512Mi",
                                           endpoint_type="async")
    try:
        future = endpoint.predict(EndpointRequest(args={"x": 1}))  # accepted while UPDATE_PENDING
        wait_status(endpoint, "UPDATE_FAILED", 60)
        response = future.get(timeout=10)
        assert response.status == "FAILURE"
        assert response.traceback
    finally:
        alice.delete_model_endpoint(endpoint)


def test_editing_a_failed_endpoint_to_a_good_bundle_recovers(alice: LaunchClient, broken_bundle: Any) -> None:
    endpoint = alice.create_model_endpoint(unique("broken-fixed"), broken_bundle, cpus=1, memory="512Mi")
    try:
        wait_status(endpoint, "UPDATE_FAILED", 60)
        good = alice.create_model_bundle(unique("fixed"), {}, load_predict_fn=models.load_linear_predict,
                                         model={"w": 2, "b": 0})
        alice.edit_model_endpoint(endpoint, model_bundle=good)
        wait_status(endpoint, "READY")
        assert record(alice, endpoint.model_endpoint.name)["status_reason"] is None
        response = endpoint.predict(EndpointRequest(args={"x": 4}, return_pickled=False))
        assert response.status == "SUCCESS" and '"y": 8' in response.result
    finally:
        alice.delete_model_endpoint(endpoint)


def test_deleting_an_endpoint_ends_its_unfinished_tasks(alice: LaunchClient) -> None:
    """A task whose endpoint is deleted ends SUCCESS or FAILURE with a reason, never silently lost."""
    slow = alice.create_model_bundle(unique("slow-start"), {}, predict_fn_or_cls=models.toolbox)
    name = unique("deleted-with-tasks")
    endpoint = alice.create_model_endpoint(name, slow, cpus=1, memory="512Mi", endpoint_type="async",
                                           per_worker=1)
    wait_status(endpoint, "READY")
    futures = [endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 2})) for _ in range(3)]
    wait_until(lambda: task(alice, futures[0].async_task_id)["attempts"] > 0, 10, "the first task to run")
    alice.delete_model_endpoint(name)
    results = [f.get(timeout=60) for f in futures]
    for response in results:
        assert response.status in ("SUCCESS", "FAILURE")
        if response.status == "FAILURE":
            assert "deleted" in response.traceback or "stopped" in response.traceback
    assert results[-1].status == "FAILURE", "the last task was still queued behind a 2 s task"
    wait_until(lambda: alice.get_model_endpoint(name) is None, 60, "the endpoint to go")


def test_raw_status_code_is_4xx_not_5xx(server: RunningServer, alice_key: str, failed_sync: Any) -> None:
    response = httpx.post(f"{server.url}/v1/sync-tasks",
                          params={"model_endpoint_name": failed_sync.model_endpoint.name},
                          json={"args": {"x": 1}}, auth=(alice_key, ""), timeout=10)
    assert response.status_code == 409
    assert set(response.json()) == {"detail"}


def test_requirements_naming_no_package_are_refused_with_the_resolver_output(alice: LaunchClient) -> None:
    """The package index answers at once that this name does not exist: the bundle is refused when it is
    created, with uv's own words, instead of failing every endpoint later (uv needs the package index,
    reachable from CI)."""
    with pytest.raises(APIError) as refused:
        alice.create_model_bundle(unique("uninstallable"), {}, predict_fn_or_cls=models.toolbox,
                                  requirements=["launch-e2e-no-such-package-x7q==0.0.1"])
    assert refused.value.status_code == 422
    assert "cannot be installed" in refused.value.detail
    assert "launch-e2e-no-such-package-x7q was not found" in refused.value.detail
