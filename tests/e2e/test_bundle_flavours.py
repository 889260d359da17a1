"""Bundles as a data scientist meets them: pickled results (lambdas, local classes, ndarrays) that round-trip
from a bundle with no requirements and from one that requires scikit-learn; the cloudpickle and Python that
pickled a bundle recorded and enforced; request schemas checked at the gateway (422 naming the field) and
published in the endpoint's OpenAPI; command bundles (the user's own HTTP server) serving sync, async and
batch; errors that say what to do."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import numpy
import pytest

from launch import APIError, EndpointRequest, LaunchClient, NoLaunchServer
from tests.conftest import RunningServer, free_port
from tests.e2e import models
from tests.e2e.helpers import SMALL, deployed, http, unique, wait_until
from tests.engines import RAY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
APPS = Path(__file__).with_name("apps")


def _check_rich(value: dict[str, Any], x: float) -> None:
    assert value["double"](21) == 42
    assert type(value["local"]).__name__ == "Local" and value["local"].value == x
    assert isinstance(value["array"], numpy.ndarray) and value["array"].tolist() == [0, x, 2 * x]


def test_pickled_results_round_trip_without_requirements(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("rich"), {}, predict_fn_or_cls=models.rich_result, requirements=[])
    assert bundle.cloudpickle_version == cloudpickle.__version__
    assert bundle.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    with deployed(alice, bundle, "sync") as endpoint:
        response = endpoint.predict(EndpointRequest(args={"x": 3.0}, return_pickled=True))
        assert response.status == "SUCCESS", response.traceback
        _check_rich(alice.download_result(response.result_url), 3.0)
    with deployed(alice, bundle, "async") as endpoint:
        response = endpoint.predict(EndpointRequest(args={"x": 2.0}, return_pickled=True)).get(timeout=60)
        assert response.status == "SUCCESS", response.traceback
        _check_rich(alice.download_result(response.result_url), 2.0)


def test_pickled_results_round_trip_from_a_scikit_learn_bundle(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(
        unique("sklearn"), {}, load_model_fn=models.load_sklearn_model, load_predict_fn=models.load_sklearn_predict,
        requirements=["scikit-learn>=1.3"])
    with deployed(alice, bundle, "sync", timeout=480) as endpoint:
        response = endpoint.predict(EndpointRequest(args={"x": 4.0}, return_pickled=True))
        assert response.status == "SUCCESS", response.traceback
        value = alice.download_result(response.result_url)
        assert value["prediction"].tolist() == pytest.approx([9.0]) and value["coef"].tolist() == pytest.approx([2.0])
        assert value["double"](2) == 4 and value["local"].value == 4.0 and value["sklearn"]
        # the environment runs the cloudpickle that pickled the bundle, whatever scikit-learn pulls in
        logs = alice.read_endpoint_creation_logs(endpoint)
        assert f"cloudpickle=={cloudpickle.__version__}" in logs


def test_a_requirement_on_another_cloudpickle_is_refused_at_creation(alice: LaunchClient) -> None:
    other = "3.0.0" if cloudpickle.__version__ != "3.0.0" else "2.2.1"
    with pytest.raises(APIError) as caught:
        alice.create_model_bundle(unique("cp"), {}, predict_fn_or_cls=models.rich_result,
                                  requirements=[f"cloudpickle=={other}"])
    assert caught.value.status_code == 422
    assert f"cloudpickle {cloudpickle.__version__}" in caught.value.detail and other in caught.value.detail


def test_a_python_this_host_lacks_is_refused_clearly(alice: LaunchClient) -> None:
    ticket = alice.connection.request("POST", "/v1/uploads")
    alice.connection.put_bytes(ticket["upload_url"], cloudpickle.dumps(models.rich_result))
    with pytest.raises(APIError) as caught:
        alice.connection.request("POST", "/v1/model-bundles", json={
            "name": unique("py"), "location": ticket["location"], "packaging_type": "cloudpickle",
            "cloudpickle_version": cloudpickle.__version__, "python_version": "3.99"})
    assert caught.value.status_code == 422 and "no Python 3.99 interpreter" in caught.value.detail


def test_a_result_that_is_not_json_says_to_ask_for_a_pickle(alice: LaunchClient, sync_toolbox: Any) -> None:
    bundle = alice.create_model_bundle(unique("dt"), {}, predict_fn_or_cls=models.json_unfriendly, requirements=[])
    with deployed(alice, bundle, "sync") as endpoint:
        response = endpoint.predict(EndpointRequest(args={"x": 1}, return_pickled=False))
        assert response.status == "FAILURE" and "return_pickled=True" in (response.traceback or "")


def test_a_wrong_address_fails_at_once_with_what_to_check() -> None:
    client = LaunchClient(api_key="k", endpoint=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(NoLaunchServer, match="no Launch server at"):
        client.list_model_bundles()
    assert time.monotonic() - started < 2


def test_wait_until_ready_reports_a_failed_start(alice: LaunchClient) -> None:
    from launch import EndpointFailed

    bundle = alice.create_model_bundle(unique("bad"), {}, load_model_fn=models.load_sklearn_model,
                                       load_predict_fn=models.load_sklearn_predict, requirements=[])
    name = unique("bad-ep")
    endpoint = alice.create_model_endpoint(name, bundle, endpoint_type="sync", **SMALL)
    try:
        with pytest.raises(EndpointFailed, match="sklearn"):
            endpoint.wait_until_ready(timeout=120, progress=False)
    finally:
        alice.delete_model_endpoint(name)


# -- schemas -----------------------------------------------------------------------------------------------


def _schemas() -> tuple[Any, Any]:
    from pydantic import BaseModel, Field

    class Point(BaseModel):
        x: int
        label: str = Field(default="p", max_length=8)

    class Doubled(BaseModel):
        y: int

    return Point, Doubled


def test_request_schema_names_the_field_and_appears_in_openapi(alice: LaunchClient, server: RunningServer,
                                                               alice_key: str) -> None:
    point, doubled = _schemas()
    bundle = alice.create_model_bundle(unique("schema"), {}, predict_fn_or_cls=models.toolbox, requirements=[],
                                       request_schema=point, response_schema=doubled)
    with deployed(alice, bundle, "sync") as endpoint, http(server.url, alice_key) as raw:
        name = endpoint.model_endpoint.name
        ok = endpoint.predict(EndpointRequest(args={"x": 4}, return_pickled=False))
        assert ok.status == "SUCCESS" and ok.result == '{"y": 8}'
        for args, field in (({"x": "four"}, "args.x"), ({}, "args.x"), ({"x": 1, "label": "much too long"},
                                                                          "args.label")):
            answer = raw.post("/v1/sync-tasks", params={"model_endpoint_name": name}, json={"args": args})
            assert answer.status_code == 422 and answer.json()["detail"].startswith(field), answer.text
        doc = raw.get(f"/v1/model-endpoints/{name}/openapi.json").json()
        request = doc["components"]["schemas"]["Request"]["properties"]["args"]
        assert request["properties"]["x"]["type"] == "integer"
        result = doc["components"]["schemas"]["Outcome"]["properties"]["result"]["contentSchema"]
        assert result["properties"]["y"]["type"] == "integer"
        assert "/v1/sync-tasks" in doc["paths"]
    with deployed(alice, bundle, "async") as endpoint, http(server.url, alice_key) as raw:
        answer = raw.post("/v1/async-tasks", params={"model_endpoint_name": endpoint.model_endpoint.name},
                          json={"args": {"x": [1]}})
        assert answer.status_code == 422 and answer.json()["detail"].startswith("args.x")
    with pytest.raises(APIError) as caught:  # batch inputs are checked when the job is created
        alice.batch_async_request(bundle, inputs=[{"x": 1}, {"x": "two"}])
    assert caught.value.status_code == 422 and "args.x" in caught.value.detail and "'1'" in caught.value.detail


# -- command bundles ---------------------------------------------------------------------------------------


def _finished(client: LaunchClient, job_id: str, timeout: float = 90) -> dict[str, Any]:
    return wait_until(
        lambda: (job := client.get_batch_async_response(job_id))["status"] in ("SUCCESS", "FAILURE") and job,
        timeout, f"batch job {job_id}")


def test_command_bundle_serves_sync_async_and_batch(alice: LaunchClient) -> None:
    port = free_port() if RAY else 8123  # a Ray worker has no network of its own: its port is the node's
    bundle = alice.create_model_bundle_from_command(
        unique("cmd"), ["python", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)], port,
        predict_route="/predict", healthcheck_route="/healthz", directory=str(APPS / "echo_app"),
        env={"APP_MODE": "bundle"})
    assert bundle.packaging_type == "command"
    expected = {"greeting": "hello from the bundle's directory", "sum": 5, "pid_ns_port": str(port), "mode": "bundle"}
    with deployed(alice, bundle, "sync") as endpoint:
        response = endpoint.predict(EndpointRequest(args={"a": 2, "b": 3}, return_pickled=False))
        assert response.status == "SUCCESS", response.traceback

        assert json.loads(response.result or "null") == expected
        failed = endpoint.predict(EndpointRequest(args={"fail": True}, return_pickled=False))
        assert failed.status == "FAILURE" and "answered 500" in (failed.traceback or "")
        pickled = endpoint.predict(EndpointRequest(args={"a": 1}, return_pickled=True))
        assert alice.download_result(pickled.result_url)["sum"] == 1
    with deployed(alice, bundle, "async") as endpoint:
        futures = [endpoint.predict(EndpointRequest(args={"a": i, "b": 1}, return_pickled=False)) for i in range(3)]
        assert [json.loads(f.get(timeout=60).result or "null")["sum"] for f in futures] == [1, 2, 3]
    job = _finished(alice, alice.batch_async_request(bundle, inputs=[{"a": 1, "b": 1}, {"a": 2, "b": 2}]))
    assert job["status"] == "SUCCESS" and job["done"] == 2, job
    rows = httpx.get(job["result"], timeout=30, trust_env=False, follow_redirects=True).json()
    assert [row["result"]["sum"] for row in rows] == [2, 4]


def test_command_that_never_gets_healthy_fails_the_endpoint_with_its_reason(alice: LaunchClient) -> None:
    port = free_port() if RAY else 8124  # a Ray worker has no network of its own: its port is the node's
    bundle = alice.create_model_bundle_from_command(unique("cmd-bad"), ["python", "-c", "raise SystemExit(7)"],
                                                    port, healthcheck_route="/healthz")
    name = unique("cmd-bad-ep")
    endpoint = alice.create_model_endpoint(name, bundle, endpoint_type="sync", **SMALL)
    try:
        from launch import EndpointFailed

        with pytest.raises(EndpointFailed, match="exited with code 7"):
            endpoint.wait_until_ready(timeout=120, progress=False)
    finally:
        alice.delete_model_endpoint(name)


# -- batch jobs on warm workers ----------------------------------------------------------------------------


def test_batch_runs_on_the_spare_capacity_of_an_endpoint_of_its_bundle(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("warm"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    with deployed(alice, bundle, "sync", per_worker=4) as endpoint:
        ident = endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 0}, return_pickled=False))
        worker = json.loads(ident.result or "null")["worker"]
        inputs = [{"op": "sleep", "x": 0}] * 3
        job = _finished(alice, alice.batch_async_request(bundle, inputs=inputs), timeout=30)
        assert job["status"] == "SUCCESS" and job["done"] == 3, job
        rows = httpx.get(job["result"], timeout=30, trust_env=False, follow_redirects=True).json()
        assert {row["result"]["worker"] for row in rows} == {worker}  # the endpoint's warm worker ran them
    # with no endpoint left, the job gets a worker of its own (from the same cached environment)
    job = _finished(alice, alice.batch_async_request(bundle, inputs=inputs), timeout=60)
    assert job["status"] == "SUCCESS" and job["done"] == 3, job


def test_cli_waits_for_an_endpoint_and_watches_a_batch_job(alice: LaunchClient, server: RunningServer,
                                                            alice_key: str, toolbox_bundle: Any) -> None:
    from tests.e2e.test_cli import launch

    name = unique("cli-wait")
    alice.create_model_endpoint(name, toolbox_bundle, endpoint_type="sync", **SMALL)
    try:
        waited = launch("endpoints", "wait", name, "--timeout", "60", key=alice_key, server=server)
        assert waited.returncode == 0 and "READY" in waited.stderr, waited.stdout + waited.stderr
    finally:
        alice.delete_model_endpoint(name)
    job_id = alice.batch_async_request(toolbox_bundle, inputs=[{"x": i} for i in range(5)])
    watched = launch("batch-jobs", "get", job_id, "--watch", "--json", key=alice_key, server=server)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    row = json.loads(watched.stdout)[0]
    assert row["status"] == "SUCCESS" and row["done"] == 5
    missing = launch("endpoints", "wait", unique("nope"), key=alice_key, server=server)
    assert missing.returncode == 1 and "no endpoint named" in missing.stdout + missing.stderr
