"""Seeing what the platform does: /metrics scraped under load (fast paths included), request ids from the
gateway into the worker's log and back, the access log, followed logs, the cold-start timeline, /v1/status."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from launch import LaunchClient
from launch.server.metrics import outcome_of
from tests.conftest import LAUNCH, RunningServer
from tests.e2e.helpers import deployed, http, wait_until

pytestmark = pytest.mark.e2e
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def admin_key(server: RunningServer) -> str:
    return server.key("ops", admin=True)


def scrape(server: RunningServer, key: str) -> Samples:
    response = http(server.url, key).get("/metrics")
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    found = [(float(dict(key)["le"]), v) for (n, key), v in samples.items()
             if n == name + "_bucket" and {k: v for k, v in key if k != "le"} == labels]
    return sorted(found)


def predict(base: str, key: str, endpoint: str, args: dict[str, Any], **headers: str) -> httpx.Response:
    return http(base, key).post(f"/v1/sync-tasks?model_endpoint_name={endpoint}",
                                json={"args": args, "return_pickled": False}, headers=headers)


def in_threads(calls: list[Callable[[], Any]], threads: int = 8) -> list[Any]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_metrics_need_an_admin_key(server: RunningServer, alice_key: str, admin_key: str) -> None:
    assert http(server.url).get("/metrics").status_code == 401
    refused = http(server.url, alice_key).get("/metrics")
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    response = http(server.url, admin_key).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE launch_requests_total counter" in response.text


def test_sync_fast_path_counters_and_histograms_move_under_load(server: RunningServer, alice_key: str,
                                                                 admin_key: str, sync_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    labels = {"route": "sync_task", "owner": "alice", "endpoint": name}
    before = scrape(server, admin_key)
    calls = [lambda i=i: predict(server.url, alice_key, name, {"op": "raise" if i % 4 == 0 else "double", "x": i})
             for i in range(120)]
    calls += [lambda: predict(server.url, alice_key, "no-such-endpoint", {"x": 1}) for _ in range(6)]
    responses = in_threads(calls)
    # the client's ledger, classified as the gateway does (a worker lost under load shows up on both sides)
    ledger = Counter(outcome_of(r.status_code, r.content) for r in responses[:120])
    assert ledger["success"] >= 80 and ledger["failure"] >= 20, ledger
    assert [r.status_code for r in responses[120:]] == [404] * 6
    time.sleep(1.1)  # worker compute histograms are collected at most once a second
    after = scrape(server, admin_key)

    def delta(metric: str, **extra: str) -> float:
        return value(after, metric, **extra) - value(before, metric, **extra)

    for outcome, count in ledger.items():
        assert delta("launch_requests_total", **labels, outcome=outcome) == count, outcome
    assert delta("launch_requests_total", route="sync_task", owner="", endpoint="", outcome="client_error") == 6
    assert delta("launch_request_duration_seconds_count", **labels) == 120
    assert delta("launch_request_duration_seconds_sum", **labels) > 0
    counts = [v for _, v in buckets(after, "launch_request_duration_seconds", **labels)]
    assert counts == sorted(counts) and counts[-1] == value(after, "launch_request_duration_seconds_count", **labels)
    compute = {"owner": "alice", "endpoint": name}
    if delta("launch_worker_starts_total", **compute, outcome="ready") == 0:  # the same worker all along
        # (a worker that dies takes what it ran since the last scrape with it: its compute time is its own)
        assert delta("launch_worker_compute_seconds_count", **compute) >= ledger["success"] + ledger["failure"]
    assert value(after, "launch_workers", **compute, state="serving") >= 1
    assert value(after, "launch_endpoint_status", **compute, status="READY") == 1


def test_async_fast_paths_and_task_metrics_move(server: RunningServer, alice_key: str, admin_key: str,
                                                async_toolbox: Any) -> None:
    name = async_toolbox.model_endpoint.name
    ep = {"owner": "alice", "endpoint": name}
    before = scrape(server, admin_key)
    client = http(server.url, alice_key)
    ids = in_threads([lambda i=i: client.post(f"/v1/async-tasks?model_endpoint_name={name}",
                                              json={"args": {"op": "double", "x": i}}).json()["task_id"]
                      for i in range(40)])
    finals = [wait_until(lambda t=task_id: (v := client.get(f"/v1/async-tasks/{t}?wait=5").json())["status"]
                         not in ("PENDING", "STARTED") and v["status"], 60, f"task {task_id}") for task_id in ids]
    after = scrape(server, admin_key)

    def delta(metric: str, **extra: str) -> float:
        return value(after, metric, **extra) - value(before, metric, **extra)

    assert finals.count("SUCCESS") >= 36, finals  # a worker lost under load retries; the ledger says how many
    assert delta("launch_requests_total", route="async_task", **ep, outcome="success") == 40
    assert delta("launch_requests_total", route="get_task", **ep, outcome="success") >= 40
    assert delta("launch_tasks_total", **ep, outcome="success") == finals.count("SUCCESS")
    attempts = sum(delta("launch_tasks_total", **ep, outcome=o) for o in ("success", "failure", "worker_lost",
                                                                          "timeout", "rejected"))
    assert delta("launch_task_queue_wait_seconds_count", **ep) == attempts >= 40
    assert delta("launch_task_duration_seconds_count", **ep) >= finals.count("SUCCESS")
    assert value(after, "launch_queue_depth", **ep) == 0


def test_in_flight_and_queue_depth_show_work_in_progress(server: RunningServer, alice_key: str, admin_key: str,
                                                         sync_toolbox: Any, async_toolbox: Any) -> None:
    sync_name, async_name = sync_toolbox.model_endpoint.name, async_toolbox.model_endpoint.name
    client = http(server.url, alice_key)
    slow = [threading.Thread(target=predict, args=(server.url, alice_key, sync_name, {"op": "sleep", "x": 8}))
            for _ in range(3)]
    for thread in slow:
        thread.start()
    # 1 worker x per_worker 8: 24 slow tasks keep 16 queued for a while (seconds, so that a loaded machine or a
    # worker on Ray still shows them)
    for _ in range(24):
        client.post(f"/v1/async-tasks?model_endpoint_name={async_name}", json={"args": {"op": "sleep", "x": 2}})

    def busy() -> Samples | None:
        got = scrape(server, admin_key)
        ok = (value(got, "launch_requests_in_flight") >= 3
              and value(got, "launch_endpoint_in_flight", owner="alice", endpoint=sync_name) >= 3
              and value(got, "launch_queue_depth", owner="alice", endpoint=async_name) > 0)
        return got if ok else None

    wait_until(busy, 7, "in-flight requests and a queue depth in /metrics", interval=0.3)
    for thread in slow:
        thread.join(timeout=30)
    wait_until(lambda: value(scrape(server, admin_key), "launch_queue_depth", owner="alice",
                             endpoint=async_name) == 0, 30, "the queue to drain", interval=1.2)


def test_cold_start_timeline_in_metrics_status_and_creation_logs(server: RunningServer, alice: LaunchClient,
                                                                 alice_key: str, admin_key: str,
                                                                 toolbox_bundle: Any) -> None:
    with deployed(alice, toolbox_bundle, "sync") as endpoint:
        name = endpoint.model_endpoint.name
        samples = scrape(server, admin_key)
        for phase in ("environment", "process_start", "imports", "load_model", "ready"):
            assert value(samples, "launch_cold_start_phase_seconds_count", owner="alice", endpoint=name,
                         phase=phase) == 1, phase
        assert value(samples, "launch_worker_starts_total", owner="alice", endpoint=name, outcome="ready") == 1
        assert value(samples, "launch_autoscaler_decisions_total", owner="alice", endpoint=name, direction="up") >= 1
        record = alice.connection.request("GET", f"/v1/model-endpoints/{name}")
        detail = http(server.url, alice_key).get(f"/v1/status/endpoints/{record['id']}").json()
        (start,) = detail["cold_starts"]
        assert start["environment"] == "server"
        assert set(start["phases"]) == {"environment", "process_start", "imports", "load_model", "ready"}
        assert abs(start["total"] - sum(start["phases"].values())) < 1e-6
        assert [h["status"] for h in detail["status_history"]][-1] == "READY"
        logs = alice.read_endpoint_creation_logs(name)
        assert re.search(STAMP + r" cold start of worker \w+ \(generation 1\): environment [\d.]+s \(server\), "
                         r"process start [\d.]+s, imports [\d.]+s, load model [\d.]+s, ready [\d.]+s", logs), logs


def test_request_id_follows_a_request_into_the_worker_log_and_the_access_log(
        server: RunningServer, alice: LaunchClient, alice_key: str, sync_toolbox: Any, async_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    rid = f"trace-{uuid.uuid4().hex[:12]}"
    response = predict(server.url, alice_key, name, {"op": "print", "x": rid}, **{"X-Request-Id": rid})
    assert response.status_code == 200 and response.headers["x-request-id"] == rid
    assert "x-request-id" not in predict(server.url, alice_key, name, {"op": "double", "x": 1}).headers
    client = http(server.url, alice_key)
    task_id = client.post(f"/v1/async-tasks?model_endpoint_name={async_toolbox.model_endpoint.name}",
                          json={"args": {"op": "print", "x": "from-a-task"}}).json()["task_id"]
    assert client.get(f"/v1/async-tasks/{task_id}?wait=10").json()["status"] == "SUCCESS"

    def logged(endpoint: str, needle: str) -> str | None:
        content = client.get(f"/v1/model-endpoints/{endpoint}/logs", params={"since_seconds": 120}).json()["content"]
        return content if needle in content else None

    sync_logs = wait_until(lambda: logged(name, f"[{rid}] printed {rid}"), 10, "the sync request's log line")
    assert re.search(STAMP + re.escape(f" [{rid}] printed {rid}"), sync_logs)
    wait_until(lambda: logged(async_toolbox.model_endpoint.name, f"[{task_id}] printed from-a-task"), 10,
               "the task's log line")
    access = server.data_dir / "logs" / "access.log"
    line = wait_until(lambda: next((ln for ln in access.read_text().splitlines() if rid in ln), None)
                      if access.exists() else None, 10, "the access log line")
    assert '"POST /v1/sync-tasks" 200' in line and f"owner=alice endpoint={name}" in line


def test_logs_since_and_follow_with_a_cursor(server: RunningServer, alice_key: str, sync_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    client = http(server.url, alice_key)
    first = client.get(f"/v1/model-endpoints/{name}/logs", params={"since_seconds": 0.001}).json()
    marker = f"follow-{uuid.uuid4().hex[:8]}"
    predict(server.url, alice_key, name, {"op": "print", "x": marker})

    def new_lines() -> str | None:
        content = client.get(f"/v1/model-endpoints/{name}/logs", params={"cursor": first["cursor"]}).json()["content"]
        return content if marker in content else None

    content = wait_until(new_lines, 10, "the new line after the cursor")
    assert "cold start of worker" not in content  # only what came after the cursor
    bad = client.get(f"/v1/model-endpoints/{name}/logs", params={"since_seconds": -1})
    assert bad.status_code == 422


def test_cli_logs_since_follow_and_status(server: RunningServer, alice_key: str, sync_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    env = {"PATH": "/usr/bin:/bin", "LAUNCH_ENDPOINT": server.url, "LAUNCH_API_KEY": alice_key, "COLUMNS": "200",
           "NO_COLOR": "1"}
    marker = f"cli-{uuid.uuid4().hex[:8]}"
    follower = subprocess.Popen([LAUNCH, "endpoints", "logs", name, "--follow", "--since", "1s"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        predict(server.url, alice_key, name, {"op": "print", "x": marker})
        time.sleep(2.5)
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    assert marker in out
    since = subprocess.run([LAUNCH, "endpoints", "logs", name, "--since", "10m"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert since.returncode == 0 and marker in since.stdout
    status = subprocess.run([LAUNCH, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert name in status.stdout and "READY" in status.stdout and "/dashboard" in status.stdout
    waited = subprocess.run([LAUNCH, "endpoints", "wait", name, "--timeout", "30"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert waited.returncode == 0 and "READY" in waited.stdout + waited.stderr


def test_status_is_scoped_to_the_owner_and_complete_for_an_admin(
        server: RunningServer, alice_key: str, bob_key: str, admin_key: str, sync_toolbox: Any) -> None:
    name = sync_toolbox.model_endpoint.name
    alice_view = http(server.url, alice_key).get("/v1/status").json()
    (row,) = [e for e in alice_view["endpoints"] if e["name"] == name]
    assert row["status"] == "READY" and row["workers"]["serving"] >= 1 and row["latency"]["p50"] is not None
    bob_view = http(server.url, bob_key).get("/v1/status").json()
    assert bob_view["owner"] == "bob" and not bob_view["admin"]
    assert all(e["owner"] == "bob" for e in bob_view["endpoints"])
    assert http(server.url, bob_key).get(f"/v1/status/endpoints/{row['id']}").status_code == 404
    admin_view = http(server.url, admin_key).get("/v1/status").json()
    assert admin_view["admin"] and any(e["id"] == row["id"] and e["owner"] == "alice"
                                       for e in admin_view["endpoints"])
    assert http(server.url, admin_key).get(f"/v1/status/endpoints/{row['id']}").status_code == 200


def test_json_logs_and_an_access_log_on_stderr(tmp_path: Any) -> None:
    import json

    from tests.conftest import start_server

    running = start_server(tmp_path / "data", None, "--log-format", "json", "--access-log", "-", "--log-level",
                           "info")
    try:
        key = running.key("alice")
        assert http(running.url, key).get("/v1/model-endpoints").status_code == 200
        assert http(running.url, key).post("/v1/sync-tasks?model_endpoint_name=nope",
                                           json={"args": {}}, headers={"X-Request-Id": "json-log-1"}).status_code == 404

        def lines() -> list[dict[str, Any]] | None:
            parsed = [json.loads(line) for line in running.log().splitlines() if line.startswith("{")]
            return parsed if any(p.get("request_id") == "json-log-1" for p in parsed) else None

        parsed = wait_until(lines, 10, "the JSON access log line")
        (entry,) = [p for p in parsed if p.get("request_id") == "json-log-1"]
        assert entry["method"] == "POST" and entry["path"] == "/v1/sync-tasks" and entry["status"] == 404
        assert entry["owner"] == "alice" and entry["duration_ms"] >= 0
        assert any(p.get("logger") == "launch.server" and "ready" in p.get("message", "") for p in parsed)
        assert not [line for line in running.log().splitlines() if line.startswith("INFO:")]  # uvicorn too
    finally:
        running.stop()


def test_dashboard_files_are_served_locally_and_nothing_else(server: RunningServer) -> None:
    client = http(server.url)
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace(server.url, "")  # no CDN: every asset is the server's own
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = client.get(f"/dashboard/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    for bad in ("..%2Fapp.py", ".hidden.js", "nope.js", "dashboard.py"):
        assert client.get(f"/dashboard/static/{bad}").status_code == 404, bad
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
