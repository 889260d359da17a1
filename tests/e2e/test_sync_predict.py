"""``SyncEndpoint.predict`` end to end: JSON and pickled results, failures with tracebacks, ``url`` inputs."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle
import httpx
import pytest

from launch import EndpointRequest, EndpointResponse, LaunchClient, ModelEndpoint, SyncEndpoint
from tests.e2e.helpers import file_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_json_result(sync_toolbox: SyncEndpoint) -> None:
    response = sync_toolbox.predict(EndpointRequest(args={"op": "double", "x": 21}, return_pickled=False))
    assert isinstance(response, EndpointResponse)
    assert response.status == "SUCCESS"
    assert isinstance(response.result, str) and json.loads(response.result) == {"y": 42}
    assert response.result_url is None and response.traceback is None


def test_pickled_result_downloads_as_cloudpickle(sync_toolbox: SyncEndpoint, alice: LaunchClient) -> None:
    response = sync_toolbox.predict(EndpointRequest(args={"op": "set", "x": 5}, return_pickled=True))
    assert response.status == "SUCCESS"
    assert response.result is None and response.traceback is None
    assert response.result_url and response.result_url.startswith("http://127.0.0.1:")
    downloaded = httpx.get(response.result_url, timeout=10, follow_redirects=True)  # a signed URL: no API key needed
    assert downloaded.status_code == 200
    assert cloudpickle.loads(downloaded.content) == {5, 6}
    assert alice.download_result(response.result_url) == {5, 6}


def test_pickled_is_the_default(sync_toolbox: SyncEndpoint) -> None:
    response = sync_toolbox.predict(EndpointRequest(args={"x": 1}))
    assert response.status == "SUCCESS" and response.result_url and response.result is None


def test_each_pickled_result_has_its_own_url(sync_toolbox: SyncEndpoint) -> None:
    urls = {sync_toolbox.predict(EndpointRequest(args={"x": i})).result_url for i in range(3)}
    assert len(urls) == 3
    downloads = [httpx.get(u, timeout=10, follow_redirects=True).content for u in urls]
    assert sorted(cloudpickle.loads(d)["y"] for d in downloads) == [0, 2, 4]


def test_raising_predict_fn_is_a_failure_with_traceback(sync_toolbox: SyncEndpoint) -> None:
    for pickled in (False, True):
        response = sync_toolbox.predict(EndpointRequest(args={"op": "raise", "x": 7}, return_pickled=pickled))
        assert response.status == "FAILURE"
        assert response.result is None and response.result_url is None
        assert "Traceback" in response.traceback and "ValueError: boom-7" in response.traceback
        assert "toolbox" in response.traceback  # the user's frame is in it


def test_non_json_output_without_pickling_is_a_failure_with_a_reason(sync_toolbox: SyncEndpoint) -> None:
    response = sync_toolbox.predict(EndpointRequest(args={"op": "set", "x": 1}, return_pickled=False))
    assert response.status == "FAILURE"
    assert "not JSON serializable" in response.traceback


def test_url_input_passes_the_file_bytes(sync_toolbox: SyncEndpoint) -> None:
    payload = b"hello from a file\n" + os.urandom(4096)
    with file_server({"/inputs/blob.bin": payload}) as base:
        response = sync_toolbox.predict(EndpointRequest(url=f"{base}/inputs/blob.bin", return_pickled=False))
    assert response.status == "SUCCESS", response.traceback
    result = json.loads(response.result)
    assert result["received_len"] == len(payload)
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()
    assert result["head"].startswith("hello from a file")


def test_url_input_that_is_missing_is_a_failure(sync_toolbox: SyncEndpoint) -> None:
    with file_server({}) as base:
        response = sync_toolbox.predict(EndpointRequest(url=f"{base}/missing.bin", return_pickled=False))
    assert response.status == "FAILURE" and "404" in response.traceback


def test_file_url_is_refused_by_scheme(sync_toolbox: SyncEndpoint) -> None:
    response = sync_toolbox.predict(EndpointRequest(url="file:///etc/passwd", return_pickled=False))
    assert response.status == "FAILURE"
    assert "scheme 'file' is not allowed" in response.traceback
    assert "root:" not in response.traceback


def test_seed_constructor_on_a_known_endpoint(alice: LaunchClient, sync_toolbox: SyncEndpoint) -> None:
    """``SyncEndpoint(model_endpoint, client)`` built by hand (as the seed documents) predicts by name."""
    endpoint = SyncEndpoint(ModelEndpoint(name=sync_toolbox.model_endpoint.name), alice)
    response = endpoint.predict(EndpointRequest(args={"x": 2}, return_pickled=False))
    assert json.loads(response.result) == {"y": 4}
    assert endpoint.status() == "READY"


def test_large_args_round_trip(sync_toolbox: SyncEndpoint) -> None:
    blob = "x" * (2 * 1024 * 1024)
    response = sync_toolbox.predict(EndpointRequest(args={"op": "echo", "blob": blob}, return_pickled=False))
    assert response.status == "SUCCESS" and json.loads(response.result) == {"blob": blob}


def test_concurrent_sync_requests(sync_toolbox: SyncEndpoint) -> None:
    def one(i: int) -> Any:
        return json.loads(sync_toolbox.predict(EndpointRequest(args={"x": i}, return_pickled=False)).result)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(100)))
    assert results == [{"y": 2 * i} for i in range(100)]
