"""Batch jobs through the SDK: inputs and urls, JSON and pickle results, failures per item, isolation, and a
runner killed halfway that resumes without recomputing finished items."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest

from launch import APIError, LaunchClient
from tests.conftest import start_server
from tests.e2e import models
from tests.e2e.helpers import file_server, unique, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def finished(client: LaunchClient, job_id: str, timeout: float = 90) -> dict[str, Any]:
    return wait_until(
        lambda: (job := client.get_batch_async_response(job_id))["status"] in ("SUCCESS", "FAILURE") and job,
        timeout, f"batch job {job_id} to finish",
    )


def results(job: dict[str, Any]) -> list[dict[str, Any]]:
    return httpx.get(job["result"], timeout=30, trust_env=False).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bundle(alice: LaunchClient) -> Any:
    return alice.create_model_bundle(unique("batch"), {}, predict_fn_or_cls=models.toolbox, requirements=[])


def test_inputs_with_json_results_and_a_failing_item(alice: LaunchClient, bundle: Any) -> None:
    inputs = [{"x": 1}, {"op": "echo", "text": "a,b 'quoted' \"double\""}, {"op": "raise", "x": 7}]
    job = finished(alice, alice.batch_async_request(bundle, inputs=inputs))
    assert job["status"] == "SUCCESS" and (job["total"], job["done"], job["failed"]) == (3, 2, 1), job
    rows = results(job)
    assert [row["id"] for row in rows] == ["0", "1", "2"]
    assert rows[0] == {"id": "0", "status": "SUCCESS", "result": {"y": 2}}
    assert rows[1]["result"] == {"text": "a,b 'quoted' \"double\""}
    assert rows[2]["status"] == "FAILURE" and "boom-7" in rows[2]["traceback"]
    assert job["duration"] and job["duration"].endswith("s")


def test_urls_with_pickled_results(alice: LaunchClient, bundle: Any) -> None:
    files = {"/a.bin": b"alpha", "/b.bin": b"bravo!"}
    with file_server(files) as base:
        job_id = alice.batch_async_request(bundle, urls=[base + "/a.bin", base + "/b.bin"],
                                           serialization_format="pickle", labels={"team": "x"})
        job = finished(alice, job_id)
    assert job["status"] == "SUCCESS" and job["labels"] == {"team": "x"}
    outputs = [cloudpickle.loads(httpx.get(row["result_url"], trust_env=False).content) for row in results(job)]
    assert [o["received_len"] for o in outputs] == [5, 6]


def test_errors_and_isolation(alice: LaunchClient, bob: LaunchClient, bundle: Any) -> None:
    with pytest.raises(ValueError):
        alice.batch_async_request(bundle, inputs=[{"x": 1}], urls=["http://127.0.0.1/x"])
    with pytest.raises(APIError) as bad_format:
        alice.batch_async_request(bundle, inputs=[{"x": 1}], serialization_format="xml")
    assert bad_format.value.status_code == 422
    with pytest.raises(APIError) as no_bundle:
        bob.batch_async_request(bundle, inputs=[{"x": 1}])
    assert no_bundle.value.status_code == 404, "bob cannot run alice's bundle"
    job_id = alice.batch_async_request(bundle, inputs=[{"x": 2}])
    with pytest.raises(APIError) as hidden:
        bob.get_batch_async_response(job_id)
    assert hidden.value.status_code == 404
    finished(alice, job_id)
    # a finished job keeps a record of the bundle's name, not a claim on it
    assert alice.delete_model_bundle(bundle) is True
    job = alice.get_batch_async_response(job_id)
    assert job["status"] == "SUCCESS" and job["bundle_name"] == bundle.name


def test_runner_killed_halfway_resumes_without_recomputing(tmp_path: Path) -> None:
    data_dir, journal = tmp_path / "data", unique("journal")
    server = start_server(data_dir)
    restarted = None
    try:
        client = LaunchClient(api_key=server.key("dave"), endpoint=server.url)
        bundle = client.create_model_bundle(unique("resume"), {}, predict_fn_or_cls=models.journaled,
                                            requirements=[])
        items = 24
        job_id = client.batch_async_request(
            bundle, inputs=[{"item": i, "journal": journal, "delay": 0.1} for i in range(items)])
        wait_until(lambda: client.get_batch_async_response(job_id)["done"] >= 6, 60, "some items done")
        done_before = client.get_batch_async_response(job_id)["done"]
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        time.sleep(0.5)

        restarted = start_server(data_dir, int(server.url.rsplit(":", 1)[1]))
        job = finished(client, job_id)
        assert job["status"] == "SUCCESS" and job["done"] == items, job
        assert [row["result"]["item"] for row in results(job)] == list(range(items)), "complete, in order"
        prefix = f"journal:{journal}:"
        lines = (line for log in (data_dir / "logs").rglob("*.log") for line in log.read_text().splitlines())
        # worker lines start with a timestamp (and a request id): the journal entry is what follows
        runs = Counter(int(line[line.index(prefix) + len(prefix):]) for line in lines if prefix in line)
        assert set(runs) == set(range(items))
        recomputed = sum(count - 1 for count in runs.values())
        # only the items in flight at the kill (at most the runner's concurrency) may run twice
        assert recomputed <= 4, f"{recomputed} items recomputed after the restart ({done_before} were done)"
    finally:
        for running in (server, restarted):
            if running is not None and running.process.poll() is None:
                running.stop()
