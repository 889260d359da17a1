"""Watching an async task live (``GET /v1/async-tasks/{id}/events``): PENDING with its queue position,
STARTED, then SUCCESS or FAILURE; ``EndpointResponseFuture.get`` uses it, and resumes across a restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launch import AsyncEndpoint, EndpointRequest, EndpointResponse, LaunchClient
from tests.conftest import RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import deployed, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def one_at_a_time(alice: LaunchClient, toolbox_bundle: Any) -> Iterator[AsyncEndpoint]:
    """An async endpoint that runs one task at a time, so that others queue behind it."""
    with deployed(alice, toolbox_bundle, "async", per_worker=1) as endpoint:
        yield endpoint


def watch(server_url: str, key: str, task_id: str, **headers: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, id, data) of every event until the stream ends."""
    events, name, event_id, data = [], "", "", ""
    with httpx.stream("GET", f"{server_url}/v1/async-tasks/{task_id}/events", auth=(key, ""), timeout=60,
                      headers=headers, trust_env=False) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and data:
                events.append((name, event_id, json.loads(data)))
                data = ""
    return events


def test_pending_with_position_then_started_then_success(server: RunningServer, alice_key: str,
                                                         one_at_a_time: AsyncEndpoint) -> None:
    busy = one_at_a_time.predict(EndpointRequest(args={"op": "sleep", "x": 1.0}, return_pickled=False))
    second = one_at_a_time.predict(EndpointRequest(args={"op": "sleep", "x": 0.2}, return_pickled=False))
    third = one_at_a_time.predict(EndpointRequest(args={"op": "double", "x": 4}, return_pickled=False))
    events = watch(server.url, alice_key, third.async_task_id)
    names = [name for name, _, _ in events]
    assert names[0] == "PENDING" and names[-2:] == ["STARTED", "SUCCESS"]
    assert set(names[:-2]) == {"PENDING"}
    positions = [data["queue_position"] for name, _, data in events if name == "PENDING"]
    assert positions[0] >= 1 and positions == sorted(positions, reverse=True) and positions[-1] == 0
    assert events[-1][2]["status"] == "SUCCESS" and json.loads(events[-1][2]["result"]) == {"y": 8}
    assert len({event_id for _, event_id, _ in events}) == len(events)  # every event is a new state
    assert busy.get(timeout=30).status == second.get(timeout=30).status == "SUCCESS"


def test_failure_event_carries_the_traceback(server: RunningServer, alice_key: str,
                                              one_at_a_time: AsyncEndpoint) -> None:
    busy = one_at_a_time.predict(EndpointRequest(args={"op": "sleep", "x": 0.5}, return_pickled=False))
    future = one_at_a_time.predict(EndpointRequest(args={"op": "raise", "x": 7}, return_pickled=False))
    events = watch(server.url, alice_key, future.async_task_id)
    assert [name for name, _, _ in events][-3:] == ["PENDING", "STARTED", "FAILURE"]
    assert "boom-7" in events[-1][2]["traceback"]
    assert busy.get(timeout=30).status == "SUCCESS"


def test_an_ended_task_sends_its_final_event_at_once_and_last_event_id_skips_it(
        server: RunningServer, alice_key: str, one_at_a_time: AsyncEndpoint) -> None:
    future = one_at_a_time.predict(EndpointRequest(args={"op": "double", "x": 1}, return_pickled=False))
    assert future.get(timeout=30).status == "SUCCESS"
    assert [name for name, _, _ in watch(server.url, alice_key, future.async_task_id)] == ["SUCCESS"]
    assert watch(server.url, alice_key, future.async_task_id, **{"Last-Event-ID": "SUCCESS"}) == []


def test_unknown_and_foreign_tasks_are_404(server: RunningServer, alice_key: str, bob_key: str,
                                           one_at_a_time: AsyncEndpoint) -> None:
    future = one_at_a_time.predict(EndpointRequest(args={"op": "double", "x": 1}, return_pickled=False))
    for key, task_id in ((alice_key, "no-such-task"), (bob_key, future.async_task_id)):
        response = httpx.get(f"{server.url}/v1/async-tasks/{task_id}/events", auth=(key, ""), timeout=10)
        assert response.status_code == 404 and "no task" in response.json()["detail"]


def test_future_get_resumes_across_a_server_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    port = int(server.url.rsplit(":", 1)[1])
    restarted: RunningServer | None = None
    try:
        client = LaunchClient(api_key=server.key("carol"), endpoint=server.url)
        bundle = client.create_model_bundle(unique("toolbox"), {}, predict_fn_or_cls=models.toolbox,
                                            requirements=[])
        with deployed(client, bundle, "async", per_worker=1) as endpoint:
            busy = endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 1.5}, return_pickled=False))
            watched = endpoint.predict(EndpointRequest(args={"op": "double", "x": 5}, return_pickled=False))
            outcome: list[EndpointResponse | BaseException] = []

            def wait() -> None:
                try:
                    outcome.append(watched.get(timeout=120))
                except BaseException as exc:
                    outcome.append(exc)

            waiter = threading.Thread(target=wait)
            waiter.start()
            assert server.stop() == 0  # while the watched task is still queued
            restarted = start_server(server.data_dir, port)
            waiter.join(timeout=120)
            assert len(outcome) == 1, "get() did not return"
            response = outcome[0]
            assert isinstance(response, EndpointResponse), response
            assert response.status == "SUCCESS" and json.loads(response.result or "") == {"y": 10}
            assert busy.get(timeout=60).status == "SUCCESS"
            assert client._task_events_supported  # it watched the events, never fell back to polling
    finally:
        for running in (server, restarted):
            if running is not None and running.process.poll() is None:
                running.stop()
