"""Authentication and owner isolation on the real server: 401s, bearer and basic keys, and bob never seeing,
using or deleting alice's bundles, endpoints and tasks."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from launch import APIError, AsyncEndpoint, EndpointRequest, LaunchClient, ModelEndpoint, SyncEndpoint
from tests.conftest import RunningServer
from tests.e2e import models
from tests.e2e.helpers import record, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PROTECTED = [
    ("GET", "/v1/model-bundles"), ("GET", "/v1/model-bundles/x"), ("POST", "/v1/model-bundles"),
    ("DELETE", "/v1/model-bundles/x"), ("POST", "/v1/model-bundles/x/clone"), ("GET", "/v1/model-endpoints"),
    ("GET", "/v1/model-endpoints/x"), ("POST", "/v1/model-endpoints"), ("PUT", "/v1/model-endpoints/x"),
    ("DELETE", "/v1/model-endpoints/x"), ("GET", "/v1/model-endpoints/x/logs"), ("POST", "/v1/uploads"),
    ("POST", "/v1/sync-tasks?model_endpoint_name=x"), ("POST", "/v1/async-tasks?model_endpoint_name=x"),
    ("GET", "/v1/async-tasks/x"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_key_is_401_json(server: RunningServer, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, json={"args": {}}, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"} and "API key" in body["detail"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_wrong_key_is_401_json(server: RunningServer, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, json={"args": {}}, timeout=10,
                             headers={"Authorization": "Bearer lk_not-a-real-key"})
    assert response.status_code == 401
    assert set(response.json()) == {"detail"}


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"lk_wrong:").decode(), "Token x",
                                    "Bearer", "Digest username=x"])
def test_malformed_or_unknown_credentials_are_401(server: RunningServer, header: str) -> None:
    response = httpx.get(server.url + "/v1/model-bundles", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401 and "detail" in response.json()


def test_bearer_and_basic_both_work(server: RunningServer, alice_key: str) -> None:
    bearer = httpx.get(server.url + "/v1/model-bundles", headers={"Authorization": f"Bearer {alice_key}"},
                       timeout=10)
    basic = httpx.get(server.url + "/v1/model-bundles", auth=(alice_key, ""), timeout=10)
    basic_with_password = httpx.get(server.url + "/v1/model-bundles", auth=(alice_key, "anything"), timeout=10)
    assert bearer.status_code == basic.status_code == basic_with_password.status_code == 200
    assert bearer.json() == basic.json() == basic_with_password.json()


def test_health_needs_no_key(server: RunningServer) -> None:
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_new_key_works_at_once_and_keys_are_distinct(server: RunningServer) -> None:
    first, second = server.key("carol"), server.key("carol")
    assert first != second
    for key in (first, second):
        assert httpx.get(server.url + "/v1/model-bundles", auth=(key, ""), timeout=10).status_code == 200


# -- owner isolation ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alices_things(alice: LaunchClient, toolbox_bundle: Any, sync_toolbox: SyncEndpoint,
                  async_toolbox: AsyncEndpoint) -> dict[str, Any]:
    future = async_toolbox.predict(EndpointRequest(args={"x": 1}))
    future.get(timeout=30)
    return {"bundle": toolbox_bundle.name, "sync": sync_toolbox.model_endpoint.name,
            "async": async_toolbox.model_endpoint.name, "task": future.async_task_id}


def expect_404(call: Any) -> None:
    with pytest.raises(APIError) as caught:
        call()
    assert caught.value.status_code == 404, caught.value


def test_bob_cannot_see_alices_bundle(bob: LaunchClient, alices_things: dict[str, Any]) -> None:
    expect_404(lambda: bob.get_model_bundle(alices_things["bundle"]))
    expect_404(lambda: bob.clone_model_bundle_with_changes(alices_things["bundle"], unique("stolen")))
    expect_404(lambda: bob.create_model_endpoint(unique("on-alices"), alices_things["bundle"], cpus=1,
                                                 memory="1Gi"))
    assert alices_things["bundle"] not in [b.name for b in bob.list_model_bundles()]


def test_bob_cannot_delete_alices_bundle(bob: LaunchClient, alice: LaunchClient,
                                         alices_things: dict[str, Any]) -> None:
    expect_404(lambda: bob.delete_model_bundle(alices_things["bundle"]))
    assert alice.get_model_bundle(alices_things["bundle"]).name == alices_things["bundle"]


def test_bob_cannot_see_or_use_alices_endpoints(bob: LaunchClient, alices_things: dict[str, Any]) -> None:
    for kind in ("sync", "async"):
        name = alices_things[kind]
        assert bob.get_model_endpoint(name) is None
        expect_404(lambda n=name: bob.read_endpoint_creation_logs(n))
        expect_404(lambda n=name: bob.edit_model_endpoint(n, max_workers=5))
    bob_names = [e.model_endpoint.name for e in bob.list_model_endpoints()]
    assert alices_things["sync"] not in bob_names and alices_things["async"] not in bob_names
    by_hand = SyncEndpoint(ModelEndpoint(name=alices_things["sync"]), bob)
    expect_404(lambda: by_hand.predict(EndpointRequest(args={"x": 1})))
    expect_404(lambda: bob.async_request(alices_things["async"], args={"x": 1}))


def test_bob_cannot_delete_alices_endpoint(bob: LaunchClient, alice: LaunchClient,
                                           alices_things: dict[str, Any]) -> None:
    expect_404(lambda: bob.delete_model_endpoint(alices_things["sync"]))
    assert record(alice, alices_things["sync"])["status"] == "READY"
    assert alice.get_model_endpoint(alices_things["sync"]).status() == "READY"


def test_bob_cannot_read_alices_task(bob: LaunchClient, alice: LaunchClient, alices_things: dict[str, Any]) -> None:
    expect_404(lambda: bob.get_async_response(alices_things["task"]))
    assert alice.get_async_response(alices_things["task"])["status"] == "SUCCESS"


def test_names_are_per_owner(bob: LaunchClient, alice: LaunchClient, alices_things: dict[str, Any]) -> None:
    """bob may use the same bundle name as alice; each sees only their own."""
    bobs = bob.create_model_bundle(alices_things["bundle"], {}, predict_fn_or_cls=models.constant("bob"))
    alices = alice.get_model_bundle(alices_things["bundle"])
    assert bobs.bundle_id != alices.bundle_id
    assert bob.get_model_bundle(alices_things["bundle"]).bundle_id == bobs.bundle_id
    assert alice.get_model_bundle(alices_things["bundle"]).bundle_id == alices.bundle_id
    alice_ids = {b.bundle_id for b in alice.list_model_bundles()}
    bob_ids = {b.bundle_id for b in bob.list_model_bundles()}
    assert not alice_ids & bob_ids


def test_bob_cannot_register_alices_upload(bob: LaunchClient, alice: LaunchClient,
                                           alices_things: dict[str, Any]) -> None:
    """An upload location names the uploader's object; bob cannot build a bundle from alice's upload."""
    location = alice.get_model_bundle(alices_things["bundle"]).location
    with pytest.raises(APIError) as caught:
        bob._create_bundle({"name": unique("hijack"), "location": location, "packaging_type": "cloudpickle"})
    assert caught.value.status_code in (403, 404, 422)
