"""Transport promises of the legacy API (spec §1, §2.2, §5), checked with raw HTTP: the shapes and status
codes the 0.3.3 client depends on without going through it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e
JSON = {"Content-Type": "application/json"}


@pytest.fixture()
def api(server: RunningServer, alice_key: str) -> httpx.Client:
    """Requests as the client sends them: basic auth (key, ""), a JSON body, redirects not followed."""
    return httpx.Client(base_url=f"{server.url}/v1/hosted_inference", auth=(alice_key, ""), headers=JSON,
                        follow_redirects=False, timeout=30)


def upload_bundle(api: httpx.Client, name: str) -> httpx.Response:
    ticket = api.post("/model_bundle_upload", content=b"{}").json()
    put = httpx.put(ticket["signedUrl"], content=b"not really a pickle", timeout=30)  # no auth, no content type
    assert put.status_code == 200, put.text
    return api.post("/model_bundle", json={
        "packaging_type": "cloudpickle", "bundle_name": name, "location": f"s3://{ticket['bucket']}/{ticket['key']}",
        "bundle_metadata": {"predict_fn_or_cls": "def f(): ..."}, "requirements": [], "env_params": {"x": "y"},
    })


def test_get_and_delete_accept_an_empty_json_body(api: httpx.Client) -> None:
    name = f"lg-http-{uuid.uuid4().hex[:6]}"
    assert upload_bundle(api, name).status_code == 200
    listed = api.request("GET", "/model_bundle", content=b"{}")
    assert listed.status_code == 200 and name in [b["name"] for b in listed.json()["bundles"]]
    got = api.request("GET", f"/model_bundle/{name}", content=b"{}").json()["bundles"]
    assert len(got) == 1 and got[0]["env_params"] == {"x": "y"} and got[0]["bundle_id"]
    deleted = api.request("DELETE", f"/model_bundle/{name}", content=b"{}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert deleted.headers["content-type"].startswith("application/json")


def test_upload_tickets(api: httpx.Client) -> None:
    for route, kind in (("/model_bundle_upload", "bundles"), ("/batch_task_input_upload", "batch-inputs")):
        ticket = api.post(route, content=b"{}").json()
        assert set(ticket) == {"signedUrl", "bucket", "key"}
        assert ticket["signedUrl"].startswith("http://127.0.0.1:") and f"/{kind}/" in ticket["key"]


def test_a_location_nothing_was_uploaded_to_is_refused(api: httpx.Client) -> None:
    ticket = api.post("/model_bundle_upload", content=b"{}").json()
    response = api.post("/model_bundle", json={
        "packaging_type": "cloudpickle", "bundle_name": "lg-never", "location": f"s3://launch/{ticket['key']}",
        "bundle_metadata": {}, "requirements": [], "env_params": {},
    })
    assert response.status_code == 422 and "nothing was uploaded" in response.json()["detail"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/no_such_route"), ("POST", "/model_bundle/"), ("GET", "/endpoints/"), ("GET", "//model_bundle"),
    ("GET", "/"), ("GET", "/endpoints/a/b/c"), ("DELETE", "/task/result/x/y"),
])
def test_unknown_routes_are_json_404s_never_redirects(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path, content=b"{}")
    assert response.status_code == 404 and "location" not in response.headers
    assert "no legacy API route" in response.json()["detail"]


def test_bad_credentials_are_401(server: RunningServer) -> None:
    url = f"{server.url}/v1/hosted_inference/model_bundle"
    for auth in (None, ("lk_wrong", ""), ("", "")):
        response = httpx.get(url, auth=auth, headers=JSON, timeout=30)
        assert response.status_code == 401 and response.json()["detail"]


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/model_bundle", b"{}"),
    ("POST", "/model_bundle", b"not json"),
    ("POST", "/model_bundle", b'{"bundle_name": 5, "location": "x", "bundle_metadata": [], "env_params": 1}'),
    ("POST", "/model_bundle/clone_with_changes", b'{"existing_bundle_name": "nope", "new_bundle_name": "x"}'),
    ("POST", "/endpoints", b'{"endpoint_name": "e"}'),
    ("POST", "/endpoints", b'{"endpoint_name": "e", "bundle_name": "nope", "cpus": -1}'),
    ("PUT", "/endpoints/nope", b'{"cpus": 2}'),
    ("PUT", "/endpoints/nope", b'{"cpus": "many"}'),
    ("POST", "/task_sync/nope", b'{"args": {}}'),
    ("POST", "/task_async/nope", b"[]"),
    ("GET", "/endpoints/nope/task_async/nope", b"{}"),
    ("POST", "/batch_job/nope", b'{"input_path": "s3://launch/x"}'),
    ("POST", "/batch_job/nope", b'{"serialization_format": "json"}'),
    ("GET", "/batch_job/nope", b"{}"),
])
def test_user_errors_are_json_4xx(api: httpx.Client, method: str, path: str, body: bytes) -> None:
    response = api.request(method, path, content=body)
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["detail"], str)


def test_self_hosted_locations_must_name_an_upload_of_this_server(api: httpx.Client) -> None:
    """§2.5: in self-hosted mode ``location`` is whatever the user's location function returned; this server
    can only load what was uploaded to it, so anything else (any JSON value, another bucket) is refused at
    once with a reason instead of creating a bundle no endpoint could ever start."""
    for location in ({"bucket": "b", "key": "k"}, 5, "s3://b/k"):
        name = f"lg-http-{uuid.uuid4().hex[:6]}"
        response = api.post("/model_bundle", json={
            "packaging_type": "cloudpickle", "bundle_name": name, "location": location,
            "bundle_metadata": {}, "requirements": [], "env_params": {}, "unknown_field": 1,
        })
        assert response.status_code == 422 and "location" in response.json()["detail"], response.text
        assert api.get(f"/model_bundle/{name}").status_code == 404
