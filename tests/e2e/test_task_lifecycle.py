"""Async tasks a user can build on, end to end: the state sequence, callbacks (signed, retried, basic auth,
mTLS, across a restart), retention, idempotency, cancel, time-outs, queue TTL, priorities, fair shares
between two owners, 429 with Retry-After, and the task list."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from launch import EndpointRequest, LaunchClient
from launch.server.control.callbacks import verify_signature
from launch.stores.database import create_sync_engine
from tests.conftest import LAUNCH, RunningServer, free_port, start_server
from tests.e2e import models
from tests.e2e.helpers import READY_TIMEOUT, SMALL, gone, http, unique, wait_until, worker_pids
from tests.e2e.receivers import Pem, Receiver, issue, make_ca, mtls_server_context

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
RETENTION = 8.0
MAX_QUEUED = 40


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pem, Any, Any, Path]:
    pem, cert, key = make_ca()
    folder = tmp_path_factory.mktemp("certs")
    (folder / "ca.pem").write_text(pem.cert)
    return pem, cert, key, folder


@pytest.fixture(scope="module")
def tserver(tmp_path_factory: pytest.TempPathFactory, ca: tuple[Pem, Any, Any, Path]) -> Iterator[RunningServer]:
    """A server with short retention, fast callback retries, a small queue cap, the test CA trusted for
    callbacks, and cancelling a running task allowed to recycle its worker."""
    env = {"LAUNCH_TASK_RETENTION_SECONDS": str(RETENTION), "LAUNCH_CALLBACK_RETRY_BASE_SECONDS": "0.2",
           "LAUNCH_CALLBACK_CA_FILE": str(ca[3] / "ca.pem"), "LAUNCH_MAX_QUEUED_TASKS": str(MAX_QUEUED)}
    running = start_server(tmp_path_factory.mktemp("tasks"), None, "--cancel-stops-worker", env=env)
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def keys(tserver: RunningServer) -> dict[str, str]:
    return {"carol": tserver.key("carol"), "dave": tserver.key("dave")}


@pytest.fixture(scope="module")
def carol(tserver: RunningServer, keys: dict[str, str]) -> LaunchClient:
    return LaunchClient(api_key=keys["carol"], endpoint=tserver.url)


@pytest.fixture(scope="module")
def bundle(carol: LaunchClient) -> str:
    return str(carol.create_model_bundle(unique("tasks"), {}, predict_fn_or_cls=models.toolbox).name)


def deploy(server: RunningServer, key: str, bundle: str, **settings: Any) -> dict[str, Any]:
    """An async endpoint made through the raw API (to pass any extra setting); waits until READY."""
    name = unique("tasks-ep")
    with http(server.url, key) as api:
        response = api.post("/v1/model-endpoints", json={"name": name, "bundle_name": bundle,
                                                          "endpoint_type": "async", **SMALL, **settings})
        assert response.status_code == 200, response.text
        wait_until(lambda: api.get(f"/v1/model-endpoints/{name}").json()["status"] == "READY", READY_TIMEOUT, "READY")
        return dict(response.json())


def submit(api: httpx.Client, endpoint: str, body: dict[str, Any], **headers: str) -> str:
    response = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint}, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["task_id"])


def sleep_task(seconds: float, **extra: Any) -> dict[str, Any]:
    return {"args": {"op": "sleep", "x": seconds}, "return_pickled": False, **extra}


def finished(api: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view = api.get(f"/v1/async-tasks/{task_id}", params={"wait": 5}).json()
        return view if view["status"] not in ("PENDING", "STARTED") else None

    return wait_until(ended, timeout, f"task {task_id} to end")


def signing_key(api: httpx.Client) -> str:
    return str(api.get("/v1/callbacks/signing-key").json()["signing_key"])


# -- states ---------------------------------------------------------------------------------------------------
def test_state_sequence_pending_started_success(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
    with http(tserver.url, keys["carol"]) as api:
        first = submit(api, endpoint["name"], sleep_task(1.0))
        second = submit(api, endpoint["name"], sleep_task(0.2))
        seen: list[tuple[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = api.get(f"/v1/async-tasks/{second}").json()
            state = (view["status"], view.get("queue_position", view.get("attempt")))
            if not seen or seen[-1] != state:
                seen.append(state)
            if view["status"] == "SUCCESS":
                break
            time.sleep(0.02)
        assert seen[0] == ("PENDING", 0), seen  # first in line while the first task runs
        assert ("STARTED", 1) in seen, seen
        statuses = [status for status, _ in seen]
        order = " ".join(status for i, status in enumerate(statuses) if i == 0 or statuses[i - 1] != status)
        # a worker stopped from outside (SIGTERM) refuses the task and it queues again: never another order
        assert re.fullmatch(r"PENDING (STARTED PENDING )*STARTED SUCCESS", order), seen
        assert finished(api, first)["status"] == "SUCCESS"
        failed = submit(api, endpoint["name"], {"args": {"op": "raise", "x": 3}, "return_pickled": False})
        view = finished(api, failed)
        assert view["status"] == "FAILURE" and view["attempt"] == 1 and view["reason"] == "ValueError: boom-3"


def test_list_tasks_route_and_cli(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle)
    with http(tserver.url, keys["carol"]) as api:
        since = time.time() - 1
        ids = [submit(api, endpoint["name"], {"args": {"x": i}, "return_pickled": False}) for i in range(3)]
        failed = submit(api, endpoint["name"], {"args": {"op": "raise"}, "return_pickled": False})
        for task_id in [*ids, failed]:
            finished(api, task_id)
        listed = api.get("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]}).json()["tasks"]
        assert [t["task_id"] for t in listed] == [failed, *reversed(ids)]  # newest first
        only = api.get("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"], "state": "FAILURE",
                                                  "since": since, "limit": 5}).json()["tasks"]
        assert [t["task_id"] for t in only] == [failed]
        bad = api.get("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"], "state": "RETRY"})
        assert bad.status_code == 422 and "state must be" in bad.json()["detail"]
    env = {**os.environ, "LAUNCH_API_KEY": keys["carol"], "LAUNCH_ENDPOINT": tserver.url}
    out = subprocess.run([LAUNCH, "tasks", "list", endpoint["name"], "--state", "SUCCESS", "--limit", "2", "--json"],
                         capture_output=True, text=True, env=env, check=True)
    assert [row["task_id"] for row in json.loads(out.stdout)] == [ids[2], ids[1]]


# -- callbacks ------------------------------------------------------------------------------------------------
def test_callback_success_and_failure_are_signed(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    receiver = Receiver(0).start()
    try:
        endpoint = deploy(tserver, keys["carol"], bundle, default_callback_url=receiver.url)
        with http(tserver.url, keys["carol"]) as api:
            ok = submit(api, endpoint["name"], {"args": {"x": 21}, "return_pickled": False})
            bad = submit(api, endpoint["name"], {"args": {"op": "raise", "x": 1}, "return_pickled": False})
            wait_until(lambda: receiver.for_task(ok) and receiver.for_task(bad), 30, "both callbacks")
            key = signing_key(api)
            for delivery in receiver.deliveries:
                assert verify_signature(key, delivery.body, delivery.headers["launch-signature"])
                assert not verify_signature(key, delivery.body + b" ", delivery.headers["launch-signature"])
                assert not verify_signature("wrong", delivery.body, delivery.headers["launch-signature"])
            success = receiver.for_task(ok)[0].json
            assert success["status"] == "SUCCESS" and json.loads(success["result"]) == {"y": 42}
            failure = receiver.for_task(bad)[0].json
            assert failure["status"] == "FAILURE" and "ValueError: boom-1" in failure["traceback"]
            assert failure["attempt"] == 1
            view = wait_until(lambda: (v := api.get(f"/v1/async-tasks/{ok}").json())["callback"]["state"]
                              == "DELIVERED" and v, 10, "the delivery to be recorded")
            assert view["callback"] == {"url": receiver.url, "state": "DELIVERED", "attempts": 1, "error": None}
            # the documented receiver snippet, as shipped in docs/tasks.md, accepts the delivery too
            snippet = _doc_snippet()
            namespace: dict[str, Any] = {}
            exec(snippet, namespace)
            delivery = receiver.for_task(ok)[0]
            assert namespace["verify"](key.encode(), delivery.body, delivery.headers["launch-signature"])
    finally:
        receiver.stop()


def _doc_snippet() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    start = text.index("```python\n# verify-callback") + len("```python\n")
    return text[start:text.index("```", start)]


def test_callback_receiver_down_then_up(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    port = free_port()
    receiver = Receiver(port)
    endpoint = deploy(tserver, keys["carol"], bundle)
    with http(tserver.url, keys["carol"]) as api:
        task_id = submit(api, endpoint["name"], {"args": {"x": 1}, "return_pickled": False,
                                                 "callback_url": receiver.url})
        wait_until(lambda: api.get(f"/v1/async-tasks/{task_id}").json()["callback"]["attempts"] >= 2, 30,
                   "failed deliveries while the receiver is down")
        view = api.get(f"/v1/async-tasks/{task_id}").json()
        assert view["status"] == "SUCCESS" and view["callback"]["state"] == "PENDING"
        assert "cannot connect" in view["callback"]["error"]
        receiver.start()
        try:
            wait_until(lambda: receiver.for_task(task_id), 30, "the delivery once the receiver is up")
            wait_until(lambda: api.get(f"/v1/async-tasks/{task_id}").json()["callback"]["state"] == "DELIVERED",
                       10, "DELIVERED")
            time.sleep(1)
            assert len(receiver.for_task(task_id)) == 1
            assert int(receiver.for_task(task_id)[0].headers["launch-delivery-attempt"]) >= 3
        finally:
            receiver.stop()


def stored_column(server: RunningServer, table: str, column: str, row_id: str) -> str:
    """One column of one row, as the database holds it (JSON as text)."""
    url = server.engines.get("LAUNCH_DATABASE_URL") or f"sqlite:///{server.data_dir / 'launch.db'}"
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text(f"SELECT {column} FROM {table} WHERE id = :id"), {"id": row_id}).scalar_one()
    finally:
        engine.dispose()
    return value if isinstance(value, str) else json.dumps(value)


def stored_callback(server: RunningServer, task_id: str) -> str:
    return stored_column(server, "tasks", "callback", task_id)


def test_callback_basic_auth(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    receiver = Receiver(0, basic=("hook", "s3cret")).start()
    try:
        endpoint = deploy(tserver, keys["carol"], bundle, default_callback_url=receiver.url,
                          default_callback_auth={"kind": "basic", "username": "hook", "password": "wrong"})
        with http(tserver.url, keys["carol"]) as api:
            good = submit(api, endpoint["name"], {"args": {"x": 2}, "return_pickled": False, "callback_auth": {
                "kind": "basic", "username": "hook", "password": "s3cret"}})
            wrong = submit(api, endpoint["name"], {"args": {"x": 3}, "return_pickled": False})
            wait_until(lambda: receiver.for_task(good), 30, "the authenticated delivery")
            view = wait_until(lambda: (v := api.get(f"/v1/async-tasks/{wrong}").json())["callback"]["attempts"]
                              >= 1 and v, 30, "a refused delivery")
            assert "401" in view["callback"]["error"] and not receiver.for_task(wrong)
            assert "s3cret" not in json.dumps(api.get(f"/v1/async-tasks/{good}").json())  # never shown
            stored = stored_callback(tserver, good)  # nor stored as it was sent: sealed at rest
            assert "s3cret" not in stored and '"sealed"' in stored and receiver.url in stored
            shown = api.get(f"/v1/model-endpoints/{endpoint['name']}").json()["configs"]["default_callback_auth"]
            assert shown == {"kind": "basic", "username": "hook", "password": "<redacted>"}
            assert '"wrong"' not in stored_column(tserver, "endpoints", "settings", endpoint["id"])
            bad = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]},
                           json={"args": {}, "callback_url": receiver.url, "callback_auth": {"kind": "digest"}})
            assert bad.status_code == 422 and "callback_auth.kind" in bad.json()["detail"]
            refused = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]},
                               json={"args": {}, "callback_url": "ftp://127.0.0.1/hook"})
            assert refused.status_code == 422 and "callback_url is not allowed" in refused.json()["detail"]
    finally:
        receiver.stop()


def test_callback_mtls(tserver: RunningServer, keys: dict[str, str], bundle: str,
                       ca: tuple[Pem, Any, Any, Path], tmp_path: Path) -> None:
    ca_pem, ca_cert, ca_key, _ = ca
    context = mtls_server_context(tmp_path, ca_pem, issue(ca_cert, ca_key, "receiver", server=True))
    receiver = Receiver(0, tls=context).start()
    client_cert = issue(ca_cert, ca_key, "launch-gateway", server=False)
    try:
        endpoint = deploy(tserver, keys["carol"], bundle)
        with http(tserver.url, keys["carol"]) as api:
            with_cert = submit(api, endpoint["name"], {
                "args": {"x": 4}, "return_pickled": False, "callback_url": receiver.url,
                "callback_auth": {"kind": "mtls", "cert": client_cert.cert, "key": client_cert.key}})
            without = submit(api, endpoint["name"], {"args": {"x": 5}, "return_pickled": False,
                                                     "callback_url": receiver.url})
            delivery = wait_until(lambda: receiver.for_task(with_cert), 30, "the mTLS delivery")[0]
            assert delivery.json["status"] == "SUCCESS"
            view = wait_until(lambda: (v := api.get(f"/v1/async-tasks/{without}").json())["callback"]["attempts"]
                              >= 1 and v, 30, "a refused delivery")
            assert view["callback"]["state"] == "PENDING" and not receiver.for_task(without)
    finally:
        receiver.stop()


def test_callback_survives_a_restart_between_result_and_delivery(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver(port)
    env = {"LAUNCH_CALLBACK_RETRY_BASE_SECONDS": "30"}  # no retry before the restart
    server = start_server(tmp_path / "data", None, env=env)
    server_port = int(server.url.rsplit(":", 1)[1])
    restarted = None
    try:
        key = server.key("erin")
        client = LaunchClient(api_key=key, endpoint=server.url)
        bundle_name = client.create_model_bundle(unique("restart"), {}, predict_fn_or_cls=models.toolbox).name
        endpoint = deploy(server, key, bundle_name, default_callback_url=receiver.url)
        with http(server.url, key) as api:
            task_id = submit(api, endpoint["name"], {"args": {"x": 8}, "return_pickled": False})
            wait_until(lambda: api.get(f"/v1/async-tasks/{task_id}").json()["callback"]["attempts"] == 1, 30,
                       "the first (failed) delivery")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        receiver.start()
        restarted = start_server(tmp_path / "data", server_port)
        delivery = wait_until(lambda: receiver.for_task(task_id), 30, "the delivery after the restart")[0]
        assert json.loads(delivery.json["result"]) == {"y": 16}
        assert delivery.headers["launch-delivery-attempt"] == "2"
    finally:
        receiver.stop()
        for running in (server, restarted):
            if running is not None and running.process.poll() is None:
                running.stop()


# -- retention, TTL, idempotency ----------------------------------------------------------------------------------
def test_retention_deletes_tasks_and_results(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle)
    with http(tserver.url, keys["carol"]) as api:
        task_id = submit(api, endpoint["name"], {"args": {"x": 1}, "return_pickled": True})
        view = finished(api, task_id)
        assert view["status"] == "SUCCESS"
        assert httpx.get(view["result_url"], timeout=10, follow_redirects=True).status_code == 200
        expired = wait_until(lambda: (v := api.get(f"/v1/async-tasks/{task_id}").json())["status"] == "EXPIRED"
                             and v, RETENTION + 10, "the retention sweep")
        assert "retention" in expired["reason"] and "SUCCESS" in expired["reason"]
        gone_result = httpx.get(view["result_url"], timeout=10, follow_redirects=True)  # the object went too
        assert gone_result.status_code == 404 and gone_result.json()["detail"] == "the result no longer exists"
        assert api.get("/v1/async-tasks/00000000-0000-0000-0000-000000000000").status_code == 404


def test_queue_ttl_expires_a_waiting_task_and_says_so(tserver: RunningServer, keys: dict[str, str],
                                                      bundle: str) -> None:
    receiver = Receiver(0).start()
    try:
        endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
        with http(tserver.url, keys["carol"]) as api:
            blocker = submit(api, endpoint["name"], sleep_task(2.0))
            waiting = submit(api, endpoint["name"], sleep_task(0.1, queue_ttl_seconds=0.5,
                                                                callback_url=receiver.url))
            view = finished(api, waiting)
            assert view["status"] == "EXPIRED" and view["attempt"] == 0 and "time-to-live" in view["reason"]
            delivery = wait_until(lambda: receiver.for_task(waiting), 30, "the EXPIRED callback")[0]
            assert delivery.json["status"] == "EXPIRED"
            assert finished(api, blocker)["status"] == "SUCCESS"
            assert api.get(f"/v1/async-tasks/{waiting}").json()["attempt"] == 0  # it never ran
    finally:
        receiver.stop()


def test_idempotent_resubmission(tserver: RunningServer, keys: dict[str, str], carol: LaunchClient,
                                 bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle)
    with http(tserver.url, keys["carol"]) as api:
        body = {"args": {"x": 7}, "return_pickled": False}
        first = submit(api, endpoint["name"], body, **{"Idempotency-Key": "order-7"})
        assert submit(api, endpoint["name"], body, **{"Idempotency-Key": "order-7"}) == first
        other = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]},
                         json={"args": {"x": 8}}, headers={"Idempotency-Key": "order-7"})
        assert other.status_code == 409 and "different request" in other.json()["detail"]
        assert submit(api, endpoint["name"], body) != first  # without a key: a new task
    sdk_endpoint = carol.get_model_endpoint(endpoint["name"])
    request = EndpointRequest(args={"x": 9}, return_pickled=False)
    future = sdk_endpoint.predict(request, idempotency_key="sdk-9")  # type: ignore[union-attr, call-arg]
    again = sdk_endpoint.predict(request, idempotency_key="sdk-9")  # type: ignore[union-attr, call-arg]
    assert future.async_task_id == again.async_task_id
    assert future.get(timeout=30).status == "SUCCESS"


# -- cancel and time-outs -------------------------------------------------------------------------------------------
def test_cancel_a_pending_task(tserver: RunningServer, keys: dict[str, str], bundle: str,
                               carol: LaunchClient) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
    with http(tserver.url, keys["carol"]) as api:
        blocker = submit(api, endpoint["name"], sleep_task(4.0))  # long enough for a CLI run on a busy machine
        queued = submit(api, endpoint["name"], sleep_task(0.1))
        sdk_endpoint = carol.get_model_endpoint(endpoint["name"])
        future = sdk_endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 0.1}))  # type: ignore[union-attr]
        response = future.cancel()  # type: ignore[union-attr]
        assert response.status == "CANCELLED" and "cancelled by its owner" in str(response.traceback)
        assert future.get(timeout=5).status == "CANCELLED"  # type: ignore[union-attr]
        by_cli = submit(api, endpoint["name"], sleep_task(0.1))
        env = {**os.environ, "LAUNCH_API_KEY": keys["carol"], "LAUNCH_ENDPOINT": tserver.url}
        out = subprocess.run([LAUNCH, "tasks", "cancel", by_cli, "--json"], capture_output=True, text=True,
                             env=env, check=True)
        assert json.loads(out.stdout)[0]["status"] == "CANCELLED"
        cancelled = api.delete(f"/v1/async-tasks/{queued}").json()
        assert cancelled["status"] == "CANCELLED" and cancelled["cancelled"] is True
        legacy = api.get(f"/v1/hosted_inference/task/result/{queued}").json()  # what the 0.3.3 client reads
        assert legacy["state"] == "FAILURE" and legacy["traceback"].startswith("CANCELLED: ")
        legacy = api.get(f"/v1/hosted_inference/task/result/{blocker}").json()
        assert legacy["state"] == "PENDING"  # STARTED is PENDING to the 0.3.3 client
        assert finished(api, blocker)["status"] == "SUCCESS"
        time.sleep(0.5)
        view = api.get(f"/v1/async-tasks/{queued}").json()
        assert view["status"] == "CANCELLED" and view["attempt"] == 0  # it never ran
        again = api.delete(f"/v1/async-tasks/{queued}").json()
        assert again["cancelled"] is False and again["status"] == "CANCELLED"
        done = api.delete(f"/v1/async-tasks/{blocker}").json()
        assert done["cancelled"] is False and done["status"] == "SUCCESS"  # an ended task stays as it was
        assert api.delete("/v1/async-tasks/00000000-0000-0000-0000-000000000000").status_code == 404


def test_cancel_a_running_task_recycles_its_worker(tserver: RunningServer, keys: dict[str, str],
                                                   bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
    with http(tserver.url, keys["carol"]) as api:
        running = submit(api, endpoint["name"], sleep_task(60))
        wait_until(lambda: api.get(f"/v1/async-tasks/{running}").json()["status"] == "STARTED", 30, "STARTED")
        [pid] = worker_pids(tserver.process.pid, endpoint["id"])
        assert api.delete(f"/v1/async-tasks/{running}").json()["status"] == "CANCELLED"
        wait_until(lambda: gone(pid), 15, "the stuck worker to be stopped")
        after = submit(api, endpoint["name"], {"args": {"x": 3}, "return_pickled": False})
        assert finished(api, after)["status"] == "SUCCESS"  # a new worker serves
        assert api.get(f"/v1/async-tasks/{running}").json()["status"] == "CANCELLED"


def test_cancel_a_running_task_drops_its_result(server: RunningServer, alice_key: str, alice: LaunchClient) -> None:
    """The session server does not recycle workers on cancel: the task runs on, its result is discarded."""
    bundle = alice.create_model_bundle(unique("cancel"), {}, predict_fn_or_cls=models.toolbox).name
    endpoint = deploy(server, alice_key, bundle, per_worker=1)
    with http(server.url, alice_key) as api:
        running = submit(api, endpoint["name"], sleep_task(1.0))
        wait_until(lambda: api.get(f"/v1/async-tasks/{running}").json()["status"] == "STARTED", 30, "STARTED")
        [pid] = worker_pids(server.process.pid, endpoint["id"])
        future_view = api.delete(f"/v1/async-tasks/{running}").json()
        assert future_view["status"] == "CANCELLED"
        after = submit(api, endpoint["name"], {"args": {"x": 3}, "return_pickled": False})
        assert finished(api, after)["status"] == "SUCCESS"
        view = api.get(f"/v1/async-tasks/{running}").json()
        assert view["status"] == "CANCELLED" and "result" not in view
        assert worker_pids(server.process.pid, endpoint["id"]) == [pid]  # the same worker served on
        api.delete(f"/v1/model-endpoints/{endpoint['name']}")


def test_task_timeout_fails_without_retry_and_recycles_the_worker(tserver: RunningServer, keys: dict[str, str],
                                                                  bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1, task_timeout_seconds=1)
    with http(tserver.url, keys["carol"]) as api:
        stuck = submit(api, endpoint["name"], sleep_task(120))
        wait_until(lambda: api.get(f"/v1/async-tasks/{stuck}").json()["status"] == "STARTED", 30, "STARTED")
        [pid] = worker_pids(tserver.process.pid, endpoint["id"])
        view = finished(api, stuck, 30)
        assert view["status"] == "FAILURE" and view["attempt"] == 1
        assert "timed out on attempt 1" in view["reason"] and "limit of 1 s" in view["reason"]
        wait_until(lambda: gone(pid), 15, "the stuck worker to be recycled")
        after = submit(api, endpoint["name"], {"args": {"x": 3}, "return_pickled": False})
        assert finished(api, after)["status"] == "SUCCESS"


# -- order: priorities and fair shares ------------------------------------------------------------------------------
def started_order(api: httpx.Client, endpoint: str, ids: list[str]) -> list[str]:
    for task_id in ids:
        finished(api, task_id, 60)
    rows = api.get("/v1/async-tasks", params={"model_endpoint_name": endpoint, "limit": 1000}).json()["tasks"]
    started = {row["task_id"]: row["started_at"] for row in rows}
    return sorted(ids, key=lambda i: started[i])


def test_priority_order(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
    with http(tserver.url, keys["carol"]) as api:
        blocker = submit(api, endpoint["name"], sleep_task(1.0))
        wait_until(lambda: api.get(f"/v1/async-tasks/{blocker}").json()["status"] == "STARTED", 30, "STARTED")
        low = [submit(api, endpoint["name"], sleep_task(0.01)) for _ in range(4)]
        high = submit(api, endpoint["name"], sleep_task(0.01, priority=10))
        urgent = submit(api, endpoint["name"], sleep_task(0.01, priority=20))
        assert api.get(f"/v1/async-tasks/{urgent}").json()["queue_position"] == 0
        assert api.get(f"/v1/async-tasks/{low[0]}").json()["queue_position"] == 2
        assert started_order(api, endpoint["name"], [*low, high, urgent]) == [urgent, high, *low]
        bad = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]},
                       json={"args": {}, "priority": "high"})
        assert bad.status_code == 422 and "priority" in bad.json()["detail"]


def test_fair_shares_between_two_owners(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    """Carol's public endpoint: her burst of 20 queued tasks does not make Dave's 3 wait behind it."""
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1, public_inference=True)
    with http(tserver.url, keys["carol"]) as carol_api, http(tserver.url, keys["dave"]) as dave_api:
        blocker = submit(carol_api, endpoint["name"], sleep_task(1.0))
        wait_until(lambda: carol_api.get(f"/v1/async-tasks/{blocker}").json()["status"] == "STARTED", 30, "start")
        burst = [submit(carol_api, endpoint["name"], sleep_task(0.05)) for _ in range(20)]
        steady = [submit(dave_api, endpoint["id"], sleep_task(0.05)) for _ in range(3)]
        assert dave_api.get(f"/v1/async-tasks/{steady[0]}").json()["queue_position"] <= 1
        for task_id in burst:
            finished(carol_api, task_id, 60)
        for task_id in steady:
            finished(dave_api, task_id, 60)
        carol_rows = carol_api.get("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"],
                                                              "limit": 100}).json()["tasks"]
        dave_rows = dave_api.get("/v1/async-tasks", params={"model_endpoint_id": endpoint["id"]}).json()["tasks"]
        assert {r["task_id"] for r in dave_rows} == set(steady)  # each owner sees only their own tasks
        carol_starts = sorted(r["started_at"] for r in carol_rows if r["task_id"] in burst)
        for row in dave_rows:  # Dave's i-th task starts by about Carol's (i+1)-th, not after her 20
            assert row["started_at"] < carol_starts[5], (row, carol_starts[:6])
        # the endpoint stays Carol's: Dave cannot see, edit or delete it
        assert dave_api.get(f"/v1/model-endpoints/{endpoint['name']}").status_code == 404
        assert dave_api.delete(f"/v1/model-endpoints/{endpoint['id']}").status_code == 404


def test_a_private_endpoint_refuses_other_owners(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle)
    with http(tserver.url, keys["dave"]) as dave_api:
        response = dave_api.post("/v1/async-tasks", params={"model_endpoint_id": endpoint["id"]}, json={"args": {}})
        assert response.status_code == 404


# -- backpressure --------------------------------------------------------------------------------------------------
def test_429_carries_retry_after(tserver: RunningServer, keys: dict[str, str], bundle: str) -> None:
    endpoint = deploy(tserver, keys["carol"], bundle, per_worker=1)
    with http(tserver.url, keys["carol"]) as api:
        blocker = submit(api, endpoint["name"], sleep_task(3.0))
        wait_until(lambda: api.get(f"/v1/async-tasks/{blocker}").json()["status"] == "STARTED", 30, "STARTED")
        queued = [submit(api, endpoint["name"], sleep_task(0.01)) for _ in range(MAX_QUEUED)]
        full = api.post("/v1/async-tasks", params={"model_endpoint_name": endpoint["name"]},
                        json=sleep_task(0.01))
        assert full.status_code == 429 and "retry later" in full.json()["detail"]
        assert int(full.headers["retry-after"]) >= 1
        for task_id in queued:
            api.delete(f"/v1/async-tasks/{task_id}")
