"""Quotas and host capacity on a real server: what one owner may ask for is bounded, each refusal names its
cap, another owner keeps being served, and a worker that does not fit on the host leaves its endpoint
pending with the reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from launch import APIError, LaunchClient
from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import SMALL, deployed, http, record, unique, wait_status, wait_until, worker_pids

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PER_ENDPOINT = ("max_workers 1000000000 is above this server's cap of 32 workers per endpoint "
                "(LAUNCH_MAX_WORKERS_PER_ENDPOINT)")


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Small per-owner quotas (the per-endpoint cap keeps its default of 32)."""
    running = start_server(tmp_path_factory.mktemp("quotas"), None, env={
        "LAUNCH_MAX_ENDPOINTS_PER_OWNER": "2", "LAUNCH_MAX_WORKERS_PER_OWNER": "3",
        "LAUNCH_MAX_QUEUED_TASKS_PER_OWNER": "3"})
    yield running
    running.stop()


def client(server: RunningServer, user: str) -> LaunchClient:
    return LaunchClient(api_key=server.key(user), endpoint=server.url)


def owner(server: RunningServer, user: str) -> tuple[LaunchClient, httpx.Client]:
    """The SDK and a raw HTTP client for a new owner."""
    key = server.key(user)
    return LaunchClient(api_key=key, endpoint=server.url), http(server.url, key)


def refused(action: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        action()
    return caught.value


class SteadyTraffic:
    """Sync predictions in a loop on another thread; every outcome is recorded."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from launch import EndpointRequest

        n = 0
        while not self._stop.is_set():
            n += 1
            response = self.endpoint.predict(EndpointRequest(args={"op": "double", "x": n}, return_pickled=False))
            if response.status == "SUCCESS" and json.loads(response.result or "null") == {"y": 2 * n}:
                self.ok += 1
            else:
                self.failures.append(f"{response.status}: {response.traceback or response.result}")
            time.sleep(0.05)

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_sixty_to_a_billion_workers_is_refused_at_create_and_edit(capped: RunningServer) -> None:
    carol, raw = owner(capped, unique("carol"))
    bundle = carol.create_model_bundle(unique("tb"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    native = refused(lambda: carol.create_model_endpoint(unique("huge"), bundle, **SMALL, min_workers=60,
                                                         max_workers=10**9))
    assert native.status_code == 422 and native.detail == PER_ENDPOINT
    legacy = raw.post("/v1/hosted_inference/endpoints", json={
        "endpoint_name": unique("huge-legacy"), "bundle_name": bundle.name, **SMALL, "min_workers": 60,
        "max_workers": 10**9, "endpoint_type": "sync"})
    assert legacy.status_code == 422 and legacy.json() == {"detail": PER_ENDPOINT}
    name = unique("small")
    carol.create_model_endpoint(name, bundle, **SMALL, min_workers=0, max_workers=1)
    edit = refused(lambda: carol.edit_model_endpoint(name, min_workers=60, max_workers=10**9))
    assert edit.status_code == 422 and edit.detail == PER_ENDPOINT
    legacy_edit = raw.put(f"/v1/hosted_inference/endpoints/{name}", json={"min_workers": 60, "max_workers": 10**9})
    assert legacy_edit.status_code == 422 and legacy_edit.json() == {"detail": PER_ENDPOINT}
    assert [e.model_endpoint.name for e in carol.list_model_endpoints()] == [name]  # nothing else exists
    assert record(carol, name)["worker_settings"]["max_workers"] == 1
    carol.delete_model_endpoint(name)


def test_one_owner_at_its_caps_is_refused_while_another_keeps_working(capped: RunningServer) -> None:
    alice = client(capped, unique("alice"))
    carol, raw = owner(capped, unique("carol"))
    alice_bundle = alice.create_model_bundle(unique("tb"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    bundle = carol.create_model_bundle(unique("tb"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    with deployed(alice, alice_bundle, "sync") as alice_endpoint, SteadyTraffic(alice_endpoint) as traffic:
        queue = carol.create_model_endpoint(unique("q"), bundle, endpoint_type="async", **SMALL, min_workers=1,
                                            max_workers=2, per_worker=1)
        other = carol.create_model_endpoint(unique("o"), bundle, **SMALL, min_workers=0, max_workers=1)
        wait_status(queue, "READY")

        third = refused(lambda: carol.create_model_endpoint(unique("third"), bundle, **SMALL))
        assert third.status_code == 409
        assert "this server's cap of 2 endpoints per owner (LAUNCH_MAX_ENDPOINTS_PER_OWNER)" in third.detail

        more = refused(lambda: carol.edit_model_endpoint(other.model_endpoint.name, max_workers=2))
        assert more.status_code == 409
        assert "to 4 workers" in more.detail
        assert "this server's cap of 3 workers per owner (LAUNCH_MAX_WORKERS_PER_OWNER)" in more.detail

        submit = f"/v1/async-tasks?model_endpoint_name={queue.model_endpoint.name}"
        accepted = [raw.post(submit, json={"args": {"op": "sleep", "x": 1.5}, "return_pickled": False})
                    for _ in range(3)]
        assert [r.status_code for r in accepted] == [200, 200, 200]
        over = raw.post(submit, json={"args": {"op": "sleep", "x": 0}, "return_pickled": False})
        assert over.status_code == 429
        assert "this server's cap of 3 queued tasks per owner (LAUNCH_MAX_QUEUED_TASKS_PER_OWNER)" in \
            over.json()["detail"]

        # alice is bound by none of carol's usage: she can add an endpoint and submit as she likes
        extra = alice.create_model_endpoint(unique("a2"), alice_bundle, **SMALL, min_workers=0, max_workers=2)
        alice.delete_model_endpoint(extra.model_endpoint.name)

        # carol's quota frees up as her tasks finish: nothing accepted was lost
        for response in accepted:
            task_id = response.json()["task_id"]
            done = wait_until(lambda t=task_id: raw.get(f"/v1/async-tasks/{t}", params={"wait": 5}).json()["status"]
                              not in ("PENDING", "STARTED") and raw.get(f"/v1/async-tasks/{t}").json(), 30,
                              "carol's task to finish")
            assert done["status"] == "SUCCESS"
        assert raw.post(submit, json={"args": {"op": "sleep", "x": 0}, "return_pickled": False}).status_code == 200

    assert traffic.failures == [] and traffic.ok > 0


@pytest.fixture(scope="module")
def small_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A host that offers its workers 1 GiB of memory and 4 cpus, not overcommitted."""
    running = start_server(tmp_path_factory.mktemp("small-host"), None, env={
        "LAUNCH_HOST_MEMORY": "1Gi", "LAUNCH_HOST_CPUS": "4", "LAUNCH_CPU_OVERCOMMIT": "1"})
    yield running
    running.stop()


def test_a_worker_that_does_not_fit_leaves_its_endpoint_pending_with_the_reason(small_host: RunningServer) -> None:
    alice = client(small_host, unique("alice"))
    bundle = alice.create_model_bundle(unique("tb"), {}, predict_fn_or_cls=models.toolbox, requirements=[])
    with deployed(alice, bundle, "sync", memory="768Mi") as big, SteadyTraffic(big) as traffic:
        name = unique("waits")
        waiting = alice.create_model_endpoint(name, bundle, cpus=1, memory="512Mi")
        reason = wait_until(lambda: record(alice, name)["status_reason"], 30, "a capacity reason")
        assert reason.startswith("waiting for host capacity: a worker needs 512Mi of memory and 256Mi of the "
                                 "host's 1Gi are free (LAUNCH_HOST_MEMORY)")
        time.sleep(2)  # it stays so: the reconciler keeps trying without starting anything
        assert record(alice, name)["status"] == "UPDATE_PENDING"
        waiting_id = record(alice, name)["id"]
        assert worker_pids(small_host.process.pid, waiting_id) == []

        too_big = alice.create_model_endpoint(unique("too-big"), bundle, cpus=8, memory="256Mi")
        reason = wait_until(lambda: record(alice, too_big.model_endpoint.name)["status_reason"], 30, "a reason")
        assert "a worker needs 8 cpus, more than this host offers (4: " in reason
        alice.delete_model_endpoint(too_big.model_endpoint.name)
    assert traffic.failures == [] and traffic.ok > 0
    # the big endpoint is gone: its memory is free and the waiting endpoint starts
    wait_status(waiting, "READY", timeout=60)
    assert record(alice, name)["status_reason"] is None
    alice.delete_model_endpoint(name)
