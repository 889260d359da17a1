"""Scale-from-zero for Launch: wait until an endpoint has no worker, then time one request to its result.

"No worker" is checked twice: the API reports no available worker, and the server's tree holds no more
worker processes than the always-on endpoints' (`baseline`), so a worker still starting or draining
cannot serve the request and flatter the number.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from launch_bench.targets.floors import LAUNCH_BODY

ZERO_TIMEOUT_S = 90.0
RESULT_TIMEOUT_S = 120.0


def _request(url: str, authorization: str, body: bytes | None = None) -> dict[str, Any]:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=RESULT_TIMEOUT_S) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def wait_for_zero(
    base: str, authorization: str, name: str, workers: Callable[[], int], baseline: int
) -> float:
    """Seconds until the endpoint reports no available worker and its worker processes are gone."""
    start = time.monotonic()
    while time.monotonic() - start < ZERO_TIMEOUT_S:
        record = _request(f"{base}/v1/model-endpoints/{name}", authorization)
        if record["worker_settings"]["available_workers"] == 0 and workers() <= baseline:
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"{name} still had workers after {ZERO_TIMEOUT_S:.0f}s")


def first_result(base: str, authorization: str, name: str, kind: str) -> dict[str, Any]:
    if kind == "sync":
        return _request(f"{base}/v1/sync-tasks?model_endpoint_name={name}", authorization, LAUNCH_BODY)
    task_id = _request(f"{base}/v1/async-tasks?model_endpoint_name={name}", authorization, LAUNCH_BODY)[
        "task_id"
    ]
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        record = _request(f"{base}/v1/async-tasks/{task_id}", authorization)
        if record["status"] in ("SUCCESS", "FAILURE"):
            return record
        time.sleep(0.01)
    raise TimeoutError(f"async task on {name} did not finish in {RESULT_TIMEOUT_S:.0f}s")


def scale_from_zero(
    base: str, authorization: str, name: str, model: str, kind: str, workers: Callable[[], int], baseline: int
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": "scale_from_zero",
        "model": model,
        "concurrency": 0,
        "endpoint_type": kind,
    }
    try:
        fields["zero_after_s"] = wait_for_zero(base, authorization, name, workers, baseline)
        start = time.monotonic()
        record = first_result(base, authorization, name, kind)
        fields["first_result_s"] = time.monotonic() - start
        fields["workers_started"] = workers() - baseline
        if record.get("status") != "SUCCESS":
            fields["error"] = f"task ended {record.get('status')}: {str(record)[:300]}"
    except Exception as exc:
        fields["error"] = f"{type(exc).__name__}: {exc}"
    return fields
