"""The seed's SDK classes without a server: construction rules and client-side checks that need no I/O."""

from __future__ import annotations

import uuid

import pytest

from launch import (
    AsyncEndpoint,
    AsyncEndpointBatchResponse,
    EndpointRequest,
    EndpointResponse,
    EndpointResponseFuture,
    LaunchClient,
    ModelEndpoint,
    SyncEndpoint,
)

NOWHERE = "http://127.0.0.1:9"  # nothing listens: any request would fail loudly


@pytest.fixture
def client() -> LaunchClient:
    return LaunchClient(api_key="lk_test", endpoint=NOWHERE)


def test_endpoint_request_needs_exactly_one_of_url_and_args() -> None:
    with pytest.raises(ValueError):
        EndpointRequest()
    with pytest.raises(ValueError):
        EndpointRequest(url="http://h/x", args={"a": 1})
    assert EndpointRequest(url="http://h/x").args is None
    assert EndpointRequest(args={}).url is None


def test_endpoint_request_type_checks() -> None:
    with pytest.raises(ValueError):
        EndpointRequest(url=b"http://h/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EndpointRequest(args=[1, 2])  # type: ignore[arg-type]


def test_endpoint_request_defaults_and_generated_request_ids() -> None:
    requests = [EndpointRequest(args={"i": i}) for i in range(50)]
    assert all(r.return_pickled is True for r in requests)
    ids = {r.request_id for r in requests}
    assert len(ids) == 50
    assert all(uuid.UUID(i) for i in ids)
    assert EndpointRequest(args={}, request_id="mine", return_pickled=False).request_id == "mine"


def test_endpoint_response_attributes(client: LaunchClient) -> None:
    response = EndpointResponse(client, "SUCCESS", result='{"a": 1}')
    assert (response.client, response.status, response.result, response.result_url, response.traceback) == (
        client, "SUCCESS", '{"a": 1}', None, None)
    failed = EndpointResponse(client, "FAILURE", traceback="Traceback ...")
    assert failed.traceback == "Traceback ..." and failed.result is None


def test_model_endpoint_from_dict_keeps_seed_attributes_only() -> None:
    record = {"name": "e", "bundle_name": "b", "status": "READY", "resource_settings": {"cpus": 1},
              "worker_settings": {"min_workers": 0}, "metadata": {"k": "v"}, "endpoint_type": "sync",
              "configs": {}, "destination": "endpoint.x", "id": "ignored", "generation": 3}
    endpoint = ModelEndpoint.from_dict(record)
    assert endpoint == ModelEndpoint(name="e", bundle_name="b", status="READY", resource_settings={"cpus": 1},
                                     worker_settings={"min_workers": 0}, metadata={"k": "v"},
                                     endpoint_type="sync", configs={}, destination="endpoint.x")


def test_client_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCH_API_KEY", raising=False)
    with pytest.raises(ValueError, match="API key"):
        LaunchClient(endpoint=NOWHERE)


def test_client_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCH_API_KEY", "lk_env")
    monkeypatch.setenv("LAUNCH_ENDPOINT", "http://127.0.0.1:1234/")
    assert LaunchClient().endpoint == "http://127.0.0.1:1234"


@pytest.mark.parametrize("forms", [
    {},
    {"predict_fn_or_cls": abs, "load_predict_fn": lambda m: m, "model": 1},
    {"load_predict_fn": lambda m: m},
    {"model": 1, "load_model_fn": lambda: 1},
])
def test_create_model_bundle_needs_exactly_one_form(client: LaunchClient, forms: dict) -> None:
    with pytest.raises(ValueError, match="exactly"):
        client.create_model_bundle("b", {}, **forms)


def test_create_model_endpoint_refuses_unknown_type_before_any_request(client: LaunchClient) -> None:
    with pytest.raises(ValueError, match="sync"):
        client.create_model_endpoint("e", "b", endpoint_type="batch")


def test_predict_batch_refuses_duplicate_request_ids_before_any_request(client: LaunchClient) -> None:
    endpoint = AsyncEndpoint(ModelEndpoint(name="e", endpoint_type="async"), client)
    requests = [EndpointRequest(args={}, request_id="same"), EndpointRequest(args={}, request_id="same")]
    with pytest.raises(ValueError, match="unique"):
        endpoint.predict_batch(requests)


def test_batch_response_before_completion(client: LaunchClient) -> None:
    batch = AsyncEndpointBatchResponse(client, "e", {"r1": "t1", "r2": "t2"})
    assert not batch.is_done(poll=False)
    with pytest.raises(ValueError):
        batch.get_responses()
    assert set(batch.request_ids) == set(batch.responses) == {"r1", "r2"}


def test_seed_constructors(client: LaunchClient) -> None:
    model_endpoint = ModelEndpoint(name="e")
    for cls in (SyncEndpoint, AsyncEndpoint):
        endpoint = cls(model_endpoint, client)
        assert endpoint.model_endpoint is model_endpoint and endpoint.client is client
    future = EndpointResponseFuture(client, "e", "task-1")
    assert (future.client, future.endpoint_name, future.async_task_id) == (client, "e", "task-1")
