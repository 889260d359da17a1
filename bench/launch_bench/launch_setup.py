"""Runs inside Launch's own venv (the repository's .venv): create the bench bundles and endpoints through the SDK.

Reads a JSON spec on argv: {"endpoint": URL, "api_key": KEY, "endpoints": [{"name", "model", "type",
"min_workers", "max_workers", "per_worker"}], "timeout_s": N}; waits until every endpoint is READY (those
with min_workers=0 only until created) and prints `BENCH_JSON {name: seconds to READY}`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import cloudpickle

from launch import LaunchClient
from launch_bench import models

cloudpickle.register_pickle_by_value(models)  # workers need not import launch_bench
FUNCTIONS = {
    "echo": models.echo,
    "sleep": models.sleep_1ms,
    "matmul": models.matmul,
    "noop": models.async_noop,
    "park": models.park,
    "tokens": models.tokens,
}
WAIT_STATES = {"PENDING", "UPDATE_PENDING", "UPDATE_IN_PROGRESS", "CREATING", "STARTING", "SCALING"}


def create(client: LaunchClient, spec: dict[str, Any]) -> Any:
    bundle = f"bench-{spec['name']}"
    client.create_model_bundle(bundle, {}, predict_fn_or_cls=FUNCTIONS[spec["model"]], requirements=[])
    return client.create_model_endpoint(
        spec["name"],
        bundle,
        endpoint_type=spec["type"],
        min_workers=spec["min_workers"],
        max_workers=spec["max_workers"],
        per_worker=spec["per_worker"],
        cpus=1,
        memory="1Gi",
        default_callback_url=spec.get("default_callback_url"),
    )


def wait_ready(endpoint: Any, started: float, timeout_s: float) -> float:
    while True:
        status = endpoint.status()
        if status == "READY":
            return time.monotonic() - started
        if status not in WAIT_STATES or time.monotonic() - started > timeout_s:
            raise SystemExit(f"endpoint {endpoint.model_endpoint.name} is {status}")
        time.sleep(0.02)


def main() -> None:
    config = json.loads(sys.argv[1])
    client = LaunchClient(api_key=config["api_key"], endpoint=config["endpoint"])
    timings: dict[str, float] = {}
    for spec in config["endpoints"]:
        started = time.monotonic()
        endpoint = create(client, spec)
        timings[spec["name"]] = wait_ready(endpoint, started, config["timeout_s"])
    print("BENCH_JSON " + json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
