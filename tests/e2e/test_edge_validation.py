"""Every input is validated at the edge, on the native and the legacy routes: each case here answered a 5xx, a
hang or a half-saved record before, and now gets a 4xx with a JSON ``detail`` (and nothing is stored).
Also the transport promises of the API document: 405 with ``Allow``, a JSON 404 for the bare legacy prefix,
Swagger UI without a CDN, and an OpenAPI document that states the server's statuses, bodies and security."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import RunningServer
from tests.e2e.helpers import http, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
LEGACY = "/v1/hosted_inference"
BAD_KEYS = ["uploads/alice/bundles//x", "uploads/alice/bundles/%2e%2e/%2e%2e/etc/passwd",
            "uploads/alice/bundles/a\x00b", "uploads/alice/bundles/" + "a" * 5000, "uploads/alice/../../etc"]


@pytest.fixture(scope="module")
def api(server: RunningServer, alice_key: str) -> Iterator[httpx.Client]:
    with http(server.url, alice_key) as client:
        yield client


@pytest.fixture(scope="module")
def uploaded(api: httpx.Client) -> str:
    ticket = api.post("/v1/uploads").json()
    assert httpx.put(ticket["upload_url"], content=b"not used", timeout=10).status_code == 200
    return str(ticket["location"])


def refused(response: httpx.Response, status: int = 422, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail, detail
    return detail


def raw_json(text: str) -> dict[str, Any]:
    """Headers for a body sent as raw text (to send JSON that httpx's encoder would not produce)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


# -- locations and object keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k[:40]))
def test_object_keys_that_are_no_upload_are_422(api: httpx.Client, key: str) -> None:
    location = f"s3://launch/{key}"
    refused(api.post("/v1/model-bundles", json={"name": unique("key"), "location": location}), 422)
    refused(api.post(f"{LEGACY}/model_bundle", json={"bundle_name": unique("key"), "location": location}), 422)
    batch = api.post("/v1/batch-jobs", json={"bundle_name": "nope", "input_location": location})
    refused(batch, batch.status_code)
    assert batch.status_code in (404, 422)


@pytest.mark.parametrize("location", [5, {"bucket": "b", "key": "k"}, None, ["s3://launch/x"]], ids=repr)
def test_legacy_location_must_be_a_string(api: httpx.Client, location: Any) -> None:
    name = unique("lg-loc")
    refused(api.post(f"{LEGACY}/model_bundle", json={"bundle_name": name, "location": location}), 422, "location")
    refused(api.get(f"{LEGACY}/model_bundle/{name}"), 404)


@pytest.mark.parametrize("location", ["s3://launch/uploads/alice/bundles/0123456789abcdef0123456789abcdef",
                                      "s3://somebucket/bundle.pkl", "/shared/bundles/b.pkl"])
def test_legacy_location_must_name_an_uploaded_object(api: httpx.Client, location: str) -> None:
    name = unique("lg-never")
    refused(api.post(f"{LEGACY}/model_bundle", json={"bundle_name": name, "location": location}), 422)
    refused(api.get(f"{LEGACY}/model_bundle/{name}"), 404)


# -- strings and numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["app_config", "metadata"])
def test_lone_surrogates_are_refused_and_never_saved(api: httpx.Client, uploaded: str, field: str) -> None:
    name = unique("surrogate")
    body = f'{{"name": "{name}", "location": "{uploaded}", "{field}": {{"k": "\\ud800"}}}}'
    refused(api.post("/v1/model-bundles", **raw_json(body)), 422)
    legacy = body.replace('"name"', '"bundle_name"').replace('"metadata"', '"bundle_metadata"')
    refused(api.post(f"{LEGACY}/model_bundle", **raw_json(legacy)), 422)
    assert api.get("/v1/model-bundles").status_code == 200  # the owner's list still answers
    refused(api.get(f"/v1/model-bundles/{name}"), 404)


def test_lone_surrogates_in_labels_are_refused(api: httpx.Client) -> None:
    for path, key in (("/v1/model-endpoints", "name"), (f"{LEGACY}/endpoints", "endpoint_name")):
        body = f'{{"{key}": "{unique("lbl")}", "bundle_name": "x", "labels": {{"team": "\\udc00"}}}}'
        refused(api.post(path, **raw_json(body)), 422)
    assert api.get("/v1/model-endpoints").status_code == 200


@pytest.mark.parametrize("body", [
    '{"cpus": "NaN"}', '{"cpus": NaN}', '{"cpus": "Infinity"}', '{"cpus": 1e999}', '{"cpus": -1}',
    '{"max_workers": 1' + "0" * 100 + "}", '{"min_workers": 1' + "0" * 30 + "}", '{"per_worker": 1e100}',
    '{"gpus": 99999999999999999999}', '{"memory": "9' + "9" * 60 + 'Gi"}',
], ids=lambda b: b[:30])
def test_numbers_are_finite_and_in_range(api: httpx.Client, body: str) -> None:
    name = unique("num")
    create = body.replace("{", f'{{"name": "{name}", "bundle_name": "any", ', 1)
    refused(api.post("/v1/model-endpoints", **raw_json(create)), 422)
    refused(api.post(f"{LEGACY}/endpoints", **raw_json(create.replace('"name"', '"endpoint_name"'))), 422)
    refused(api.put(f"/v1/model-endpoints/{name}", **raw_json(body)), 422)
    refused(api.get(f"/v1/model-endpoints/{name}"), 404)  # nothing half-saved


def test_bounds_hold_on_an_existing_endpoint(api: httpx.Client, sync_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    before = api.get(f"/v1/model-endpoints/{name}").json()
    refused(api.put(f"/v1/model-endpoints/{name}", **raw_json('{"max_workers": 1' + "0" * 100 + "}")), 422)
    refused(api.put(f"/v1/model-endpoints/{name}", **raw_json('{"cpus": "NaN"}')), 422)
    after = api.get(f"/v1/model-endpoints/{name}").json()
    assert after["worker_settings"] == before["worker_settings"] and after["generation"] == before["generation"]


# -- sizes ----------------------------------------------------------------------------------------------------


def test_a_declared_oversize_upload_is_refused_at_once(api: httpx.Client, server: RunningServer) -> None:
    """A signed upload declaring 2 GiB but sending 1 KiB: 413 before the body is read, not a 5 s hang."""
    ticket = api.post("/v1/uploads").json()
    target = urlparse(ticket["upload_url"])
    request = (f"PUT {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Length: {2 * 1024 ** 3}\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode() + b"x" * 1024
    started = time.monotonic()
    answer = ""
    with socket.create_connection((target.hostname, target.port), timeout=5) as sock:
        sock.sendall(request)
        while '"}' not in answer:  # the head and the JSON body may come in separate reads
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk.decode("latin-1")
    assert time.monotonic() - started < 2
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"detail"' in answer and "over the limit" in answer


# -- methods, prefixes, documentation -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", "/v1/model-bundles", "GET, POST"), ("PUT", "/v1/model-endpoints", "GET, POST"),
    ("POST", "/v1/model-endpoints/x", "DELETE, GET, PUT"), ("GET", "/v1/sync-tasks", "POST"),
    ("PUT", "/v1/async-tasks/abc", "DELETE, GET"), ("GET", f"{LEGACY}/model_bundle_upload", "POST"),
    ("GET", f"{LEGACY}/model_bundle/clone_with_changes", "POST"),
    ("PUT", f"{LEGACY}/batch_job/x", "GET, POST"), ("PATCH", f"{LEGACY}/model_bundle", "GET, POST"),
])
def test_wrong_methods_are_405_with_allow(api: httpx.Client, method: str, path: str, allow: str) -> None:
    response = api.request(method, path)
    refused(response, 405, method)
    assert response.headers["allow"] == allow


def test_bare_legacy_prefix_is_a_json_404(api: httpx.Client) -> None:
    for path in (LEGACY, LEGACY + "/"):
        response = api.get(path, follow_redirects=False)
        refused(response, 404, "no legacy API route")
        assert "location" not in response.headers


def test_swagger_ui_is_served_from_the_package(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/docs", timeout=10)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "//cdn" not in page.text and "https://" not in page.text
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        response = httpx.get(f"{server.url}{asset}", timeout=10)
        assert response.status_code == 200 and len(response.content) > 10_000


def test_the_document_states_statuses_bodies_parameters_and_security(server: RunningServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schemes = doc["components"]["securitySchemes"]
    assert {s["scheme"] for s in schemes.values()} == {"basic", "bearer"}
    error = {"$ref": "#/components/schemas/ErrorDetail"}
    assert doc["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert responses["422"]["content"]["application/json"]["schema"] == error, (method, path)
            if not path.startswith(("/v1/uploads/", "/v1/results/")):
                assert {"401", "422"} <= set(responses) and operation["security"], (method, path)
    for path in ("/v1/sync-tasks", "/v1/async-tasks"):
        operation = doc["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert {"args", "url", "return_pickled", "pickle_protocol"} <= set(body["properties"])
        assert {"model_endpoint_name", "model_endpoint_id"} <= {p["name"] for p in operation["parameters"]}
    async_submit = doc["paths"]["/v1/async-tasks"]["post"]
    assert {"priority", "queue_ttl_seconds", "callback_url", "callback_auth"} <= set(
        async_submit["requestBody"]["content"]["application/json"]["schema"]["properties"])
    assert "Idempotency-Key" in {p["name"] for p in async_submit["parameters"]}
    assert {"get", "delete"} <= set(doc["paths"]["/v1/async-tasks/{task_id}"])
    assert {"404", "409", "429"} <= set(doc["paths"]["/v1/async-tasks"]["post"]["responses"])
    assert "413" in doc["paths"]["/v1/model-bundles"]["post"]["responses"]
