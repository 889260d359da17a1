"""Errors on the raw HTTP API: every refusal is a 4xx with a JSON ``detail`` (never a 500, never a hang)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from launch import AsyncEndpoint, SyncEndpoint
from tests.conftest import RunningServer
from tests.e2e.helpers import http, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LIMIT = 10 * 1024 * 1024  # the server's default max_request_bytes


@pytest.fixture(scope="module")
def log_offset(server: RunningServer) -> int:
    """Where the server log stood before this module's requests."""
    return len(server.log())


@pytest.fixture(scope="module")
def api(server: RunningServer, alice_key: str, log_offset: int) -> Iterator[httpx.Client]:
    with http(server.url, alice_key) as client:
        yield client


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail, detail


def sync(api: httpx.Client, name: str, **kwargs: Any) -> httpx.Response:
    return api.post("/v1/sync-tasks", params={"model_endpoint_name": name}, **kwargs)


def submit(api: httpx.Client, name: str, **kwargs: Any) -> httpx.Response:
    return api.post("/v1/async-tasks", params={"model_endpoint_name": name}, **kwargs)


# -- not found -------------------------------------------------------------------------------------------------


def test_unknown_endpoint_is_404(api: httpx.Client) -> None:
    name = unique("nowhere")
    assert_error(sync(api, name, json={"args": {}}), 404, name)
    assert_error(submit(api, name, json={"args": {}}), 404, name)
    assert_error(api.get(f"/v1/model-endpoints/{name}"), 404, name)
    assert_error(api.put(f"/v1/model-endpoints/{name}", json={"max_workers": 2}), 404)
    assert_error(api.delete(f"/v1/model-endpoints/{name}"), 404)
    assert_error(api.get(f"/v1/model-endpoints/{name}/logs"), 404)


def test_unknown_task_and_bundle_are_404(api: httpx.Client) -> None:
    assert_error(api.get("/v1/async-tasks/00000000-0000-0000-0000-000000000000"), 404)
    assert_error(api.get("/v1/async-tasks/not-even-a-uuid"), 404)
    assert_error(api.get(f"/v1/model-bundles/{unique('nope')}"), 404)
    assert_error(api.delete(f"/v1/model-bundles/{unique('nope')}"), 404)


# -- malformed task bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"args": [1, 2]}, {"args": "x=1"}, {"args": 5}, {}, {"return_pickled": False}, {"url": 12}, {"url": ""},
    {"args": {}, "return_pickled": "yes"}, [{"args": {}}], "args", None,
], ids=repr)
def test_bad_task_shape_is_422(api: httpx.Client, sync_toolbox: SyncEndpoint, async_toolbox: AsyncEndpoint,
                               body: Any) -> None:
    assert_error(sync(api, sync_toolbox.model_endpoint.name, json=body), 422)
    assert_error(submit(api, async_toolbox.model_endpoint.name, json=body), 422)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"args": {"x": 1}', b"nan"], ids=repr)
def test_invalid_json_is_422(api: httpx.Client, sync_toolbox: SyncEndpoint, async_toolbox: AsyncEndpoint,
                             raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(sync(api, sync_toolbox.model_endpoint.name, content=raw, headers=headers), 422)
    assert_error(submit(api, async_toolbox.model_endpoint.name, content=raw, headers=headers), 422)


def test_invalid_json_on_resource_routes_is_422(api: httpx.Client) -> None:
    for path in ("/v1/model-bundles", "/v1/model-endpoints"):
        assert_error(api.post(path, content=b"{oops", headers={"Content-Type": "application/json"}), 422)


def test_missing_endpoint_name_is_422(api: httpx.Client) -> None:
    assert_error(api.post("/v1/sync-tasks", json={"args": {}}), 422, "model_endpoint_name")
    assert_error(api.post("/v1/async-tasks", json={"args": {}}), 422, "model_endpoint_name")


def test_task_to_the_wrong_kind_of_endpoint_is_422(api: httpx.Client, sync_toolbox: SyncEndpoint,
                                                   async_toolbox: AsyncEndpoint) -> None:
    assert_error(sync(api, async_toolbox.model_endpoint.name, json={"args": {"x": 1}}), 422, "async")
    assert_error(submit(api, sync_toolbox.model_endpoint.name, json={"args": {"x": 1}}), 422, "sync")


# -- size limits -------------------------------------------------------------------------------------------------


def oversize_body() -> bytes:
    return b'{"args": {"blob": "' + b"x" * (LIMIT + 1024) + b'"}}'


@pytest.mark.parametrize("path", ["/v1/sync-tasks", "/v1/async-tasks", "/v1/model-bundles", "/v1/model-endpoints",
                                  "/v1/model-bundles/x/clone"])
def test_oversize_body_is_413(api: httpx.Client, sync_toolbox: SyncEndpoint, path: str) -> None:
    response = api.post(path, params={"model_endpoint_name": sync_toolbox.model_endpoint.name},
                        content=oversize_body(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, str(LIMIT))


@pytest.mark.parametrize("path", [
    "/v1/sync-tasks", "/v1/async-tasks",
    "/v1/model-endpoints",
])
def test_oversize_chunked_body_without_length_is_413(api: httpx.Client, sync_toolbox: SyncEndpoint,
                                                     async_toolbox: AsyncEndpoint, path: str) -> None:
    name = (async_toolbox if "async" in path else sync_toolbox).model_endpoint.name

    def chunks() -> Iterator[bytes]:
        yield b'{"args": {"blob": "'
        for _ in range(11):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    response = api.post(path, params={"model_endpoint_name": name}, content=chunks(),
                        headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


def test_body_just_under_the_limit_is_accepted(api: httpx.Client, sync_toolbox: SyncEndpoint) -> None:
    blob = "x" * (LIMIT - 1024)
    response = sync(api, sync_toolbox.model_endpoint.name,
                    json={"args": {"op": "echo", "blob": blob}, "return_pickled": False})
    assert response.status_code == 200 and response.json()["status"] == "SUCCESS"


# -- resource validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"min_workers": 3, "max_workers": 2}, {"memory": "lots"}, {"per_worker": 0}, {"cpus": -1}, {"gpus": -1},
    {"endpoint_type": "batch"}, {"name": "bad name"}, {"name": "creation_logs"}, {"name": ""},
    {"min_workers": "many"}, {"metadata": "not-a-dict"}, {"labels": {"k": {"nested": 1}}},
], ids=repr)
def test_impossible_endpoint_is_422(api: httpx.Client, toolbox_bundle: Any, changes: dict[str, Any]) -> None:
    body = {"name": unique("bad"), "bundle_name": toolbox_bundle.name, "cpus": 1, "memory": "1Gi", **changes}
    assert_error(api.post("/v1/model-endpoints", json=body), 422)


def test_gpu_endpoint_fails_with_a_reason_on_a_cpu_server(api: httpx.Client, toolbox_bundle: Any) -> None:
    name = unique("gpu")
    body = {"name": name, "bundle_name": toolbox_bundle.name, "cpus": 1, "memory": "1Gi", "gpus": 1,
            "gpu_type": "nvidia-tesla-t4"}
    assert api.post("/v1/model-endpoints", json=body).status_code == 200
    try:
        deadline = time.monotonic() + 20
        while (record := api.get(f"/v1/model-endpoints/{name}").json())["status"] != "UPDATE_FAILED":
            assert time.monotonic() < deadline, record
            time.sleep(0.1)
        assert "GPU" in record["status_reason"]
    finally:
        api.delete(f"/v1/model-endpoints/{name}")


@pytest.fixture(scope="module")
def uploaded(api: httpx.Client) -> str:
    """The location of real uploaded bytes, so only the field under test makes a bundle invalid."""
    ticket = api.post("/v1/uploads").json()
    assert httpx.put(ticket["upload_url"], content=b"not used", timeout=10).status_code == 200
    return str(ticket["location"])


def test_valid_bundle_body_is_accepted(api: httpx.Client, uploaded: str) -> None:
    response = api.post("/v1/model-bundles", json={"name": unique("ok"), "location": uploaded})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("changes", "word"), [
    ({"packaging_type": "tarball"}, "packaging_type"),
    ({"packaging_type": "zip"}, "load_predict_fn_module_path"),
    ({"name": "a/b"}, "invalid bundle name"),
    ({"name": "-x"}, "invalid bundle name"),
    ({"location": "s3://launch/uploads/alice/bundles/never-uploaded"}, "nothing was uploaded"),
    ({"location": "s3://launch/../../etc/passwd"}, "not one of your uploads"),
    ({"location": "s3://launch/uploads/bob/bundles/x"}, "not one of your uploads"),
    ({"requirements": "numpy"}, "requirements"),
    ({"requirements": [1]}, "requirements"),
], ids=repr)
def test_impossible_bundle_is_422(api: httpx.Client, uploaded: str, changes: dict[str, Any], word: str) -> None:
    body = {"name": unique("bad"), "location": uploaded, **changes}
    assert_error(api.post("/v1/model-bundles", json=body), 422, word)


def test_bad_signed_urls_are_401(api: httpx.Client, server: RunningServer) -> None:
    assert_error(httpx.put(f"{server.url}/v1/uploads/forged.123.abc", content=b"x", timeout=10), 401)
    assert_error(httpx.get(f"{server.url}/v1/results/forged.123.abc", timeout=10), 401)


def test_tampered_result_url_is_401(api: httpx.Client, sync_toolbox: SyncEndpoint) -> None:
    url = sync(api, sync_toolbox.model_endpoint.name, json={"args": {"x": 1}}).json()["result_url"]
    assert httpx.get(url, timeout=10, follow_redirects=True).status_code == 200
    prefix, _, mac = url.rpartition(".")
    forged = prefix + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    assert_error(httpx.get(forged, timeout=10), 401)


def test_upload_url_accepts_one_put_only(api: httpx.Client) -> None:
    """Bundles are immutable: once bytes were uploaded (and a bundle may already run them), the same signed
    URL must not replace them."""
    ticket = api.post("/v1/uploads").json()
    assert set(ticket) >= {"upload_url", "location"}
    assert httpx.put(ticket["upload_url"], content=b"original", timeout=10).status_code == 200
    replaced = httpx.put(ticket["upload_url"], content=b"replacement", timeout=10)
    assert 400 <= replaced.status_code < 500, replaced.text


def test_no_internal_server_error_was_logged(server: RunningServer, log_offset: int) -> None:
    """Every request above was refused on purpose: none may have reached the 500 handler."""
    new_log = server.log()[log_offset:]
    assert "unexpected error" not in new_log and "Exception in ASGI application" not in new_log, new_log[-3000:]
