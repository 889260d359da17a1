"""``AsyncEndpoint`` end to end: futures, batches, the deprecated client calls, many concurrent tasks."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle
import httpx
import pytest

from launch import (
    AsyncEndpoint,
    AsyncEndpointBatchResponse,
    EndpointRequest,
    EndpointResponse,
    EndpointResponseFuture,
    LaunchClient,
)
from tests.e2e.helpers import file_server, task, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_future_json_success(async_toolbox: AsyncEndpoint) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"x": 8}, return_pickled=False))
    assert isinstance(future, EndpointResponseFuture)
    assert future.endpoint_name == async_toolbox.model_endpoint.name and future.async_task_id
    response = future.get(timeout=30)
    assert isinstance(response, EndpointResponse)
    assert response.status == "SUCCESS"
    assert json.loads(response.result) == {"y": 16}
    assert response.result_url is None and response.traceback is None


def test_future_pickled_success(async_toolbox: AsyncEndpoint) -> None:
    response = async_toolbox.predict(EndpointRequest(args={"op": "set", "x": 1})).get(timeout=30)
    assert response.status == "SUCCESS" and response.result is None
    assert cloudpickle.loads(httpx.get(response.result_url, timeout=10).content) == {1, 2}


def test_future_failure_has_traceback(async_toolbox: AsyncEndpoint) -> None:
    for pickled in (True, False):
        response = async_toolbox.predict(EndpointRequest(args={"op": "raise", "x": 3},
                                                         return_pickled=pickled)).get(timeout=30)
        assert response.status == "FAILURE"
        assert "ValueError: boom-3" in response.traceback
        assert response.result is None and response.result_url is None


def test_failed_prediction_is_not_retried(async_toolbox: AsyncEndpoint, alice: LaunchClient) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"op": "raise", "x": 0}))
    assert future.get(timeout=30).status == "FAILURE"
    assert task(alice, future.async_task_id)["attempts"] == 1  # a user error is final, not an infrastructure one


def test_non_json_output_is_a_failure_with_reason(async_toolbox: AsyncEndpoint) -> None:
    response = async_toolbox.predict(EndpointRequest(args={"op": "set", "x": 1},
                                                     return_pickled=False)).get(timeout=30)
    assert response.status == "FAILURE" and "not JSON serializable" in response.traceback


def test_url_inputs(async_toolbox: AsyncEndpoint) -> None:
    with file_server({"/a.txt": b"async file body"}) as base:
        ok = async_toolbox.predict(EndpointRequest(url=f"{base}/a.txt", return_pickled=False)).get(timeout=30)
    assert ok.status == "SUCCESS" and json.loads(ok.result)["head"] == "async file body"
    denied = async_toolbox.predict(EndpointRequest(url="file:///etc/passwd", return_pickled=False)).get(timeout=30)
    assert denied.status == "FAILURE" and "scheme 'file' is not allowed" in denied.traceback


def test_pending_while_running(async_toolbox: AsyncEndpoint, alice: LaunchClient) -> None:
    future = async_toolbox.predict(EndpointRequest(args={"op": "sleep", "x": 1.0}, return_pickled=False))
    raw = alice.get_async_response(future.async_task_id)
    assert raw["status"] == raw["state"]
    assert raw["status"] in ("PENDING", "STARTED")  # queued, or a worker already runs it
    assert future.get(timeout=30).status == "SUCCESS"


def test_deprecated_async_request_and_get_async_response(async_toolbox: AsyncEndpoint,
                                                         alice: LaunchClient) -> None:
    name = async_toolbox.model_endpoint.name
    task_id = alice.async_request(name, args={"x": 50}, return_pickled=False)
    unfinished = ("PENDING", "STARTED")
    raw = wait_until(lambda: (r := alice.get_async_response(task_id))["state"] not in unfinished and r, 30,
                     "the task to finish")
    assert raw["state"] == raw["status"] == "SUCCESS"
    assert json.loads(raw["result"]) == {"y": 100}
    again = EndpointResponseFuture(alice, name, task_id).get(timeout=10)  # the seed's constructor
    assert again.status == "SUCCESS" and json.loads(again.result) == {"y": 100}


def test_predict_batch(async_toolbox: AsyncEndpoint) -> None:
    requests = [EndpointRequest(args={"op": "sleep", "x": 1.0}, return_pickled=False, request_id=f"r{i}")
                for i in range(4)]
    requests += [EndpointRequest(args={"x": i}, return_pickled=bool(i % 2), request_id=f"d{i}") for i in range(6)]
    requests.append(EndpointRequest(args={"op": "raise", "x": 9}, request_id="bad"))
    batch = async_toolbox.predict_batch(requests)
    assert isinstance(batch, AsyncEndpointBatchResponse)
    assert set(batch.request_ids) == {r.request_id for r in requests}
    assert not batch.is_done(poll=False)
    with pytest.raises(ValueError):
        batch.get_responses()
    batch.poll_endpoints()  # one round; the sleeping ones cannot be done yet
    assert not batch.is_done(poll=False)
    wait_until(lambda: batch.is_done(poll=True), 30, "the batch to finish", interval=0.2)
    responses = batch.get_responses()
    assert set(responses) == set(batch.request_ids)
    for i in range(6):
        response = responses[f"d{i}"]
        assert response.status == "SUCCESS"
        if i % 2:
            assert cloudpickle.loads(httpx.get(response.result_url, timeout=10).content) == {"y": 2 * i}
        else:
            assert json.loads(response.result) == {"y": 2 * i}
    assert all(json.loads(responses[f"r{i}"].result)["slept"] == 1.0 for i in range(4))
    assert responses["bad"].status == "FAILURE" and "boom-9" in responses["bad"].traceback


def test_predict_batch_refuses_duplicate_request_ids(async_toolbox: AsyncEndpoint) -> None:
    requests = [EndpointRequest(args={"x": 1}, request_id="same"), EndpointRequest(args={"x": 2}, request_id="same")]
    with pytest.raises(ValueError):
        async_toolbox.predict_batch(requests)


def test_many_concurrent_tasks_complete_correctly(async_toolbox: AsyncEndpoint) -> None:
    def submit_and_wait(i: int) -> Any:
        response = async_toolbox.predict(EndpointRequest(args={"x": i}, return_pickled=False)).get(timeout=90)
        assert response.status == "SUCCESS", response.traceback
        return json.loads(response.result)["y"]

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(submit_and_wait, range(200)))
    assert results == [2 * i for i in range(200)]
    assert time.monotonic() - started < 90
