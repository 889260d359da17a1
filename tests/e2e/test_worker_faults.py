"""Workers SIGKILLed in the middle of work: accepted async tasks are retried and all succeed; sync requests
in flight on the dead worker get a clear 502, and the ones after it are served."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from launch import APIError, EndpointRequest, LaunchClient
from tests.conftest import RunningServer
from tests.e2e import models
from tests.e2e.helpers import deployed, process_identity, record, task, unique, wait_until, worker_pids
from tests.engines import local_workers_only

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180), local_workers_only]


@pytest.fixture(scope="module")
def bundle(alice: LaunchClient) -> Any:
    return alice.create_model_bundle(unique("faults"), {}, predict_fn_or_cls=models.toolbox)


def test_async_worker_sigkill_loses_no_accepted_task(alice: LaunchClient, server: RunningServer,
                                                     bundle: Any) -> None:
    with deployed(alice, bundle, "async", per_worker=4) as endpoint:
        endpoint_id = record(alice, endpoint.model_endpoint.name)["id"]
        victims = worker_pids(server.process.pid, endpoint_id)
        assert len(victims) == 1
        with ThreadPoolExecutor(10) as pool:
            futures = list(pool.map(
                lambda i: endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 0.2 + i / 1000},
                                                           return_pickled=False)), range(40)))
        wait_until(lambda: sum(task(alice, f.async_task_id)["attempts"] > 0 for f in futures[:8]) >= 2, 20,
                   "tasks to be running")
        os.kill(victims[0], signal.SIGKILL)
        responses = [f.get(timeout=90) for f in futures]
        failures = [r.traceback for r in responses if r.status != "SUCCESS"]
        assert not failures, f"{len(failures)} of {len(responses)} accepted tasks failed, e.g. {failures[0]}"
        assert [json.loads(r.result)["slept"] for r in responses] == [0.2 + i / 1000 for i in range(40)]
        attempts = [task(alice, f.async_task_id)["attempts"] for f in futures]
        assert max(attempts) >= 2, "the kill hit running tasks, which were run again"
        replacement = wait_until(lambda: worker_pids(server.process.pid, endpoint_id), 30, "a new worker")
        assert victims[0] not in replacement


def test_sync_worker_sigkill(alice: LaunchClient, server: RunningServer, bundle: Any) -> None:
    with deployed(alice, bundle, "sync", min_workers=2, max_workers=2, per_worker=4) as endpoint:
        endpoint_id = record(alice, endpoint.model_endpoint.name)["id"]
        wait_until(lambda: endpoint.worker_settings()["available_workers"] == 2, 30, "two workers")
        victim, survivor = worker_pids(server.process.pid, endpoint_id)

        def slow(i: int) -> tuple[str, Any]:
            try:
                response = endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 1.5}, return_pickled=False))
            except APIError as exc:
                return "error", (exc.status_code, exc.detail)
            return response.status, json.loads(response.result)["worker"]

        with ThreadPoolExecutor(6) as pool:
            in_flight = [pool.submit(slow, i) for i in range(6)]
            time.sleep(0.7)  # all six are running, spread over both workers
            os.kill(victim, signal.SIGKILL)
            # the gateway learns of the death when the connection breaks, which fails what ran there; requests
            # racing that notice by microseconds may be reported as "may have run" (502), so send after it
            wait_until(lambda: any(f.done() for f in in_flight), 10, "the killed worker's requests to fail")
            after = [endpoint.predict(EndpointRequest(args={"x": i}, return_pickled=False)) for i in range(20)]
            outcomes = [f.result(timeout=60) for f in in_flight]

        assert [json.loads(r.result)["y"] for r in after if r.status == "SUCCESS"] == [2 * i for i in range(20)], \
            "requests sent after the kill are served (by the survivor, then the replacement)"
        served = [value for status, value in outcomes if status == "SUCCESS"]
        failed = [value for status, value in outcomes if status == "error"]
        assert set(served) == {process_identity(survivor)}, outcomes
        assert failed, "the requests running on the killed worker cannot have succeeded"
        assert all(code == 502 and "failed during the prediction" in detail for code, detail in failed), failed
        wait_until(lambda: len(worker_pids(server.process.pid, endpoint_id)) == 2, 30, "a replacement worker")


def test_sync_worker_sigterm_drains_without_failed_requests(alice: LaunchClient, server: RunningServer,
                                                            bundle: Any) -> None:
    """A worker told to stop from outside finishes what it runs, refuses new work (which goes to the other
    worker), exits 0 and is replaced: no request fails."""
    with deployed(alice, bundle, "sync", min_workers=2, max_workers=2, per_worker=4) as endpoint:
        endpoint_id = record(alice, endpoint.model_endpoint.name)["id"]
        wait_until(lambda: endpoint.worker_settings()["available_workers"] == 2, 30, "two workers")
        victim, _ = worker_pids(server.process.pid, endpoint_id)

        def call(i: int) -> tuple[str | None, Any]:
            op = {"op": "sleep", "x": 0.3} if i < 4 else {"x": i}
            try:
                response = endpoint.predict(EndpointRequest(args=op, return_pickled=False))
            except APIError as exc:
                return "error", (exc.status_code, exc.detail)
            return response.status, json.loads(response.result)

        with ThreadPoolExecutor(8) as pool:
            slow = [pool.submit(call, i) for i in range(4)]
            time.sleep(0.1)  # the slow ones are running on both workers
            os.kill(victim, signal.SIGTERM)
            quick = [pool.submit(call, i) for i in range(4, 40)]
            outcomes = [f.result(timeout=60) for f in slow + quick]

        assert all(status == "SUCCESS" for status, _ in outcomes), [o for o in outcomes if o[0] != "SUCCESS"]
        wait_until(lambda: victim not in worker_pids(server.process.pid, endpoint_id), 30, "the victim to exit")
        wait_until(lambda: len(worker_pids(server.process.pid, endpoint_id)) == 2, 30, "a replacement worker")


def test_async_worker_sigterm_loses_nothing_and_spends_no_attempt(alice: LaunchClient, server: RunningServer,
                                                                  bundle: Any) -> None:
    with deployed(alice, bundle, "async", per_worker=4) as endpoint:
        endpoint_id = record(alice, endpoint.model_endpoint.name)["id"]
        (victim,) = worker_pids(server.process.pid, endpoint_id)
        futures = [endpoint.predict(EndpointRequest(args={"op": "sleep", "x": 0.2}, return_pickled=False))
                   for _ in range(20)]
        wait_until(lambda: task(alice, futures[0].async_task_id)["attempts"] > 0, 20, "tasks to be running")
        os.kill(victim, signal.SIGTERM)
        responses = [f.get(timeout=90) for f in futures]
        assert [r.status for r in responses] == ["SUCCESS"] * 20, [r.traceback for r in responses]
        attempts = [task(alice, f.async_task_id)["attempts"] for f in futures]
        assert max(attempts) == 1, f"a drained worker finishes or refuses, so nothing runs twice: {attempts}"
