"""Model endpoints end to end: create (sync and async, every setting), the seed's ``ModelEndpoint`` attributes
and ``Endpoint`` methods, get, list, edit (settings and rolling bundle change), delete, creation logs."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from launch import APIError, AsyncEndpoint, EndpointRequest, LaunchClient, ModelEndpoint, SyncEndpoint
from tests.conftest import RunningServer
from tests.e2e import models
from tests.e2e.helpers import gone, record, unique, wait_status, wait_until, worker_pids
from tests.engines import local_workers_only

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def constant_bundles(alice: LaunchClient) -> dict[str, Any]:
    return {v: alice.create_model_bundle(unique(f"const-{v}"), {}, predict_fn_or_cls=models.constant(v))
            for v in ("A", "B")}


@pytest.fixture(scope="module")
def pair(alice: LaunchClient, constant_bundles: dict[str, Any]) -> dict[str, Any]:
    """A sync and an async endpoint with explicit settings, metadata and labels (deleted by the last test)."""
    created = {}
    for kind, workers in (("sync", (1, 2, 3)), ("async", (1, 1, 5))):
        low, high, per_worker = workers
        created[kind] = alice.create_model_endpoint(
            unique(f"pair-{kind}"), constant_bundles["A"], cpus=1, memory="256Mi", storage="1Gi",
            min_workers=low, max_workers=high, per_worker=per_worker, endpoint_type=kind,
            metadata={"team": "e2e", "kind": kind}, labels={"env": "test"},
        )
    for endpoint in created.values():
        wait_status(endpoint, "READY")
    return created


def test_create_returns_the_right_class_at_once(pair: dict[str, Any]) -> None:
    assert type(pair["sync"]) is SyncEndpoint
    assert type(pair["async"]) is AsyncEndpoint


def test_model_endpoint_attributes(alice: LaunchClient, pair: dict[str, Any],
                                   constant_bundles: dict[str, Any]) -> None:
    endpoint = alice.get_model_endpoint(pair["async"].model_endpoint.name)
    assert isinstance(endpoint, AsyncEndpoint)
    me = endpoint.model_endpoint
    assert isinstance(me, ModelEndpoint)
    assert me.name == pair["async"].model_endpoint.name
    assert me.bundle_name == constant_bundles["A"].name
    assert me.status == "READY"
    assert me.endpoint_type == "async"
    assert me.metadata == {"team": "e2e", "kind": "async"}
    assert me.resource_settings["cpus"] == 1 and me.resource_settings["memory"] == "256Mi"
    assert me.resource_settings["storage"] == "1Gi" and me.resource_settings["gpus"] == 0
    assert {k: me.worker_settings[k] for k in ("min_workers", "max_workers", "per_worker")} == {
        "min_workers": 1, "max_workers": 1, "per_worker": 5}
    assert isinstance(me.configs, dict)
    assert isinstance(me.destination, str) and me.destination
    raw = record(alice, me.name)
    assert raw["labels"] == {"env": "test"}
    assert raw["status_reason"] is None


def test_endpoint_methods_read_fresh_state(pair: dict[str, Any]) -> None:
    endpoint = pair["sync"]
    assert endpoint.status() == "READY"
    assert endpoint.resource_settings()["memory"] == "256Mi"
    settings = endpoint.worker_settings()
    assert (settings["min_workers"], settings["max_workers"], settings["per_worker"]) == (1, 2, 3)
    assert settings["available_workers"] >= 1


def test_get_unknown_endpoint_is_none(alice: LaunchClient) -> None:
    assert alice.get_model_endpoint(unique("no-such-endpoint")) is None


def test_list_is_async_first_then_sync(alice: LaunchClient, pair: dict[str, Any]) -> None:
    listed = alice.list_model_endpoints()
    names = [e.model_endpoint.name for e in listed]
    assert pair["sync"].model_endpoint.name in names and pair["async"].model_endpoint.name in names
    kinds = [e.model_endpoint.endpoint_type for e in listed]
    assert kinds == sorted(kinds)  # "async" < "sync": every async endpoint before every sync one
    expected = [AsyncEndpoint if kind == "async" else SyncEndpoint for kind in kinds]
    assert [type(e) for e in listed] == expected


def test_duplicate_endpoint_name_is_409(alice: LaunchClient, pair: dict[str, Any],
                                        constant_bundles: dict[str, Any]) -> None:
    with pytest.raises(APIError) as caught:
        alice.create_model_endpoint(pair["sync"].model_endpoint.name, constant_bundles["B"], cpus=1, memory="1Gi")
    assert caught.value.status_code == 409


def test_endpoint_for_unknown_bundle_is_404(alice: LaunchClient) -> None:
    with pytest.raises(APIError) as caught:
        alice.create_model_endpoint(unique("orphan"), unique("no-such-bundle"), cpus=1, memory="1Gi")
    assert caught.value.status_code == 404


def test_impossible_settings_are_422(alice: LaunchClient, constant_bundles: dict[str, Any]) -> None:
    for settings in ({"min_workers": 3, "max_workers": 2}, {"memory": "lots"}, {"per_worker": 0}, {"cpus": 0}):
        with pytest.raises(APIError) as caught:
            alice.create_model_endpoint(unique("bad"), constant_bundles["A"], **{"cpus": 1, "memory": "1Gi",
                                                                                 **settings})
        assert caught.value.status_code == 422, settings


def test_edit_worker_settings_without_rollout(alice: LaunchClient, pair: dict[str, Any]) -> None:
    endpoint = pair["sync"]
    generation = record(alice, endpoint.model_endpoint.name)["generation"]
    alice.edit_model_endpoint(endpoint, max_workers=3, per_worker=6)
    settings = endpoint.worker_settings()
    assert (settings["max_workers"], settings["per_worker"]) == (3, 6)
    raw = record(alice, endpoint.model_endpoint.name)
    assert raw["generation"] == generation and raw["status"] == "READY"
    assert raw["metadata"] == {"team": "e2e", "kind": "sync"}


def test_edit_bundle_rolls_out_without_failed_requests(alice: LaunchClient, pair: dict[str, Any],
                                                       constant_bundles: dict[str, Any]) -> None:
    endpoint = pair["sync"]
    name = endpoint.model_endpoint.name
    answers: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def keep_predicting() -> None:
        while not stop.is_set():
            response = endpoint.predict(EndpointRequest(args={}, return_pickled=False))
            if response.status == "SUCCESS":
                answers.append(json.loads(response.result))
            else:
                errors.append(str(response.traceback))

    assert json.loads(endpoint.predict(EndpointRequest(args={}, return_pickled=False)).result) == "A"
    load = threading.Thread(target=keep_predicting)
    load.start()
    try:
        alice.edit_model_endpoint(name, model_bundle=constant_bundles["B"])
        wait_until(lambda: answers and answers[-1] == "B", 60, "predictions from the new bundle")
        wait_status(endpoint, "READY")
    finally:
        stop.set()
        load.join(30)
    assert not errors
    first_b = answers.index("B")
    assert set(answers[first_b:]) == {"B"}, "once the new bundle answers, the old one never does again"
    assert record(alice, name)["bundle_name"] == constant_bundles["B"].name
    for _ in range(5):
        assert json.loads(endpoint.predict(EndpointRequest(args={}, return_pickled=False)).result) == "B"


def test_update_if_exists_edits_and_returns_none(alice: LaunchClient, pair: dict[str, Any],
                                                 constant_bundles: dict[str, Any]) -> None:
    endpoint = pair["async"]
    name = endpoint.model_endpoint.name
    result = alice.create_model_endpoint(name, constant_bundles["B"], cpus=1, memory="256Mi", min_workers=1,
                                         max_workers=1, per_worker=5, endpoint_type="async",
                                         update_if_exists=True)
    assert result is None
    wait_until(lambda: record(alice, name)["bundle_name"] == constant_bundles["B"].name, 10, "bundle change")
    answer = wait_until(
        lambda: endpoint.predict(EndpointRequest(args={}, return_pickled=False)).get(timeout=30).result == '"B"',
        60, "the async endpoint to answer from bundle B")
    assert answer
    created = alice.create_model_endpoint(unique("uie-new"), constant_bundles["A"], cpus=1, memory="256Mi",
                                          update_if_exists=True)
    assert isinstance(created, SyncEndpoint)  # update_if_exists on a new name creates it
    alice.delete_model_endpoint(created)


@local_workers_only
def test_creation_logs(alice: LaunchClient, pair: dict[str, Any]) -> None:
    logs = alice.read_endpoint_creation_logs(pair["sync"])
    assert "loading bundle" in logs and "ready on" in logs


@local_workers_only
def test_delete_stops_workers_and_forgets_the_endpoint(alice: LaunchClient, server: RunningServer,
                                                      pair: dict[str, Any], constant_bundles: dict[str, Any]) -> None:
    for endpoint in pair.values():
        name = endpoint.model_endpoint.name
        endpoint_id = record(alice, name)["id"]
        pids = worker_pids(server.process.pid, endpoint_id)
        assert pids, "a READY endpoint has worker processes"
        assert alice.delete_model_endpoint(name) is True
        wait_until(lambda n=name: alice.get_model_endpoint(n) is None, 30, f"{name} to disappear")
        wait_until(lambda p=pids: all(gone(pid) for pid in p), 30, "its workers to stop")
        assert name not in [e.model_endpoint.name for e in alice.list_model_endpoints()]
        with pytest.raises(APIError) as caught:
            alice.delete_model_endpoint(name)
        assert caught.value.status_code == 404
    for bundle in constant_bundles.values():  # no endpoint uses them any more
        assert alice.delete_model_bundle(bundle) is True
