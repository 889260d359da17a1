"""Rollouts that cannot hurt, deletion that follows intent, and failures that say why.

An edit to a bundle that cannot start (requirements that do not install, a loader that raises) under steady
sync and async traffic: no request fails, the old bundle keeps answering, the record names both bundles and
the reason (once: deterministic failures are not retried), and a later edit retries.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from launch import APIError, EndpointRequest, LaunchClient
from tests.conftest import LAUNCH, RunningServer
from tests.e2e import models
from tests.e2e.helpers import SMALL, http, record, unique, wait_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
NEVER_BUILDS = "launch-e2e: this package never builds"


@pytest.fixture(scope="module")
def unbuildable(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A requirement that resolves (static metadata) but never installs: its in-tree build backend raises,
    like a C extension that does not compile on this host. No package index is involved."""
    root = tmp_path_factory.mktemp("unbuildable")
    (root / "backend").mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "launch-e2e-unbuildable"\nversion = "1.0"\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "failing_backend"\nbackend-path = ["backend"]\n')
    (root / "backend" / "failing_backend.py").write_text(
        f"def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        f"    raise RuntimeError({NEVER_BUILDS!r})\n")
    return f"launch-e2e-unbuildable @ {root.as_uri()}"


class Traffic:
    """Steady sync predictions and async tasks (each awaited) in two threads; every answer is recorded."""

    def __init__(self, url: str, key: str, sync_name: str, async_name: str) -> None:
        self.url, self.key = url, key
        self.names = {"sync": sync_name, "async": async_name}
        self.answers: dict[str, list[str]] = {"sync": [], "async": []}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(kind,)) for kind in ("sync", "async")]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, kind: str) -> None:
        params = {"model_endpoint_name": self.names[kind]}
        body = {"args": {}, "return_pickled": False}
        with http(self.url, self.key) as client:
            while not self.stop.is_set():
                try:
                    self._one(client, kind, params, body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{kind}: {exc!r}")
                time.sleep(0.01)

    def _one(self, client: httpx.Client, kind: str, params: dict[str, str], body: dict[str, Any]) -> None:
        if kind == "sync":
            response = client.post("/v1/sync-tasks", params=params, json=body)
            if response.status_code != 200 or response.json().get("status") != "SUCCESS":
                self.failures.append(f"sync: {response.status_code} {response.text[:300]}")
                return
            self.answers["sync"].append(json.loads(response.json()["result"]))
            return
        submitted = client.post("/v1/async-tasks", params=params, json=body)
        if submitted.status_code != 200:
            self.failures.append(f"async submit: {submitted.status_code} {submitted.text[:300]}")
            return
        task = client.get(f"/v1/async-tasks/{submitted.json()['task_id']}", params={"wait": 30}).json()
        if task.get("status") != "SUCCESS":
            self.failures.append(f"async task: {task}")
            return
        self.answers["async"].append(json.loads(task["result"]))

    def total(self) -> int:
        return len(self.answers["sync"]) + len(self.answers["async"])


@pytest.fixture
def serving_a(alice: LaunchClient) -> Iterator[dict[str, Any]]:
    """A sync and an async endpoint of a bundle answering "A", READY."""
    bundle = alice.create_model_bundle(unique("answers-a"), {}, predict_fn_or_cls=models.constant("A"))
    endpoints = {kind: alice.create_model_endpoint(unique(f"rollout-{kind}"), bundle, endpoint_type=kind,
                                                   **SMALL, per_worker=4) for kind in ("sync", "async")}
    for endpoint in endpoints.values():
        wait_status(endpoint, "READY")
    yield {"bundle": bundle, **endpoints}
    for endpoint in endpoints.values():
        alice.delete_model_endpoint(endpoint)


def _bad_bundle(alice: LaunchClient, kind: str, unbuildable: str) -> Any:
    if kind == "requirements":
        return alice.create_model_bundle(unique("unbuildable"), {}, predict_fn_or_cls=models.constant("B"),
                                         requirements=[unbuildable])
    return alice.create_model_bundle(unique("loader-raises"), {}, load_predict_fn=models.load_linear_predict,
                                     load_model_fn=models.load_broken_model)


@pytest.mark.parametrize("kind", ["requirements", "loader"])
def test_a_failed_rollout_under_traffic_fails_no_request(alice: LaunchClient, server: RunningServer,
                                                         alice_key: str, serving_a: dict[str, Any],
                                                         unbuildable: str, kind: str) -> None:
    bad = _bad_bundle(alice, kind, unbuildable)
    names = {k: serving_a[k].model_endpoint.name for k in ("sync", "async")}
    with Traffic(server.url, alice_key, names["sync"], names["async"]) as traffic:
        wait_until(lambda: traffic.total() >= 5, 30, "traffic to flow")
        for name in names.values():
            alice.edit_model_endpoint(name, model_bundle=bad)
        for name in names.values():
            wait_until(lambda n=name: alice.get_model_endpoint(n).model_endpoint.failed_rollout, 120,
                       f"the rollout of {name} to fail")
        settled = traffic.total()
        wait_until(lambda: traffic.total() >= settled + 10, 30, "traffic after the failure")
    assert traffic.failures == [], traffic.failures[:5]
    assert set(traffic.answers["sync"]) == {"A"} and set(traffic.answers["async"]) == {"A"}

    expected = (f"RuntimeError: {NEVER_BUILDS}" if kind == "requirements"
                else f"RuntimeError: weights file is corrupt ({models.MARKER})")
    for name in names.values():
        endpoint = alice.get_model_endpoint(name)
        assert endpoint is not None
        seen = endpoint.model_endpoint  # what the SDK shows
        assert seen.status == "UPDATE_FAILED"
        assert seen.bundle_name == serving_a["bundle"].name, "the record names the bundle that serves"
        assert seen.failed_rollout is not None and seen.failed_rollout["bundle_name"] == bad.name
        assert expected in seen.failed_rollout["reason"]
        assert seen.status_reason is not None and expected in seen.status_reason
        assert seen.status_reason.count(expected) == 1, "a deterministic failure is tried once"
        assert f"still serving bundle {serving_a['bundle'].name!r}" in seen.status_reason
        logs = alice.read_endpoint_creation_logs(name)
        assert "failed:" in logs and expected in logs
        attempts = logs.split("==> status")[0]  # the logs themselves, before the reason appended last
        if kind == "requirements":
            assert attempts.count("pip install") == 1, "one build attempt, not three"
        else:
            assert attempts.count("bundle failed to load") == 1, "one load attempt, not three"


def test_a_later_edit_retries_a_failed_rollout(alice: LaunchClient, serving_a: dict[str, Any]) -> None:
    endpoint = serving_a["sync"]
    name = endpoint.model_endpoint.name
    alice.edit_model_endpoint(name, model_bundle=_bad_bundle(alice, "loader", ""))
    wait_until(lambda: record(alice, name)["failed_rollout"], 60, "the rollout to fail")
    good = alice.create_model_bundle(unique("answers-b"), {}, predict_fn_or_cls=models.constant("B"))
    alice.edit_model_endpoint(name, model_bundle=good)
    wait_status(endpoint, "READY")
    view = record(alice, name)
    assert view["bundle_name"] == good.name and view["failed_rollout"] is None and view["status_reason"] is None
    answer = endpoint.predict(EndpointRequest(args={}, return_pickled=False))
    assert answer.status == "SUCCESS" and json.loads(answer.result) == "B"


def test_delete_endpoint_then_its_bundle_at_once(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("short-lived"), {}, predict_fn_or_cls=models.constant("A"))
    name = unique("short-lived")
    endpoint = alice.create_model_endpoint(name, bundle, **SMALL)
    wait_status(endpoint, "READY")
    with pytest.raises(APIError) as in_use:
        alice.delete_model_bundle(bundle)
    assert in_use.value.status_code == 409 and name in in_use.value.detail
    assert alice.delete_model_endpoint(name) is True
    assert alice.delete_model_bundle(bundle) is True  # the endpoint being torn down only keeps its name
    wait_until(lambda: alice.get_model_endpoint(name) is None, 30, "the endpoint to go")


def test_unresolvable_requirements_are_refused_when_the_bundle_is_created(alice: LaunchClient) -> None:
    """uv's resolver answers from the package index (reachable from CI), once, at creation."""
    name = unique("impossible")
    started = time.monotonic()
    with pytest.raises(APIError) as refused:
        alice.create_model_bundle(name, {}, predict_fn_or_cls=models.toolbox, requirements=["scikit-learn==99.0"])
    assert refused.value.status_code == 422
    assert "cannot be installed" in refused.value.detail and "scikit-learn" in refused.value.detail
    assert refused.value.detail.count("scikit-learn==99.0") <= 2  # uv's one sentence, not three attempts
    assert time.monotonic() - started < 60
    with pytest.raises(APIError) as absent:  # nothing half-saved
        alice.connection.request("GET", f"/v1/model-bundles/{name}")
    assert absent.value.status_code == 404
    with pytest.raises(APIError) as again:  # cached: the same answer at once
        alice.create_model_bundle(name, {}, predict_fn_or_cls=models.toolbox, requirements=["scikit-learn==99.0"])
    assert again.value.detail == refused.value.detail


def test_a_failure_before_any_worker_started_is_in_the_sdk_and_the_logs(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("wants-gpu"), {}, predict_fn_or_cls=models.constant("A"))
    name = unique("wants-gpu")
    endpoint = alice.create_model_endpoint(name, bundle, **{**SMALL, "gpus": 1, "gpu_type": "nvidia-tesla-t4"})
    try:
        wait_status(endpoint, "UPDATE_FAILED", 30)
        seen = alice.get_model_endpoint(name)
        assert seen is not None and seen.model_endpoint.status_reason and "GPU" in seen.model_endpoint.status_reason
        logs = alice.read_endpoint_creation_logs(name)
        assert logs and "GPU" in logs and "failed:" in logs
    finally:
        alice.delete_model_endpoint(name)
        alice.delete_model_bundle(bundle)


def test_cli_endpoints_get_shows_the_reason(alice: LaunchClient, server: RunningServer, alice_key: str) -> None:
    bundle = alice.create_model_bundle(unique("cli-gpu"), {}, predict_fn_or_cls=models.constant("A"))
    name = unique("cli-gpu")
    endpoint = alice.create_model_endpoint(name, bundle, **{**SMALL, "gpus": 1, "gpu_type": "a100"})
    try:
        wait_status(endpoint, "UPDATE_FAILED", 30)
        out = subprocess.run([LAUNCH, "endpoints", "get", name, "--json", "--api-key", alice_key,
                              "--endpoint", server.url], capture_output=True, text=True, check=True).stdout
        shown = json.loads(out)[0]
        assert "GPU" in shown["status_reason"] and shown["failed_rollout"]["bundle_name"] == bundle.name
    finally:
        alice.delete_model_endpoint(name)

