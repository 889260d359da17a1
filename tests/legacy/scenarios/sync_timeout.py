"""A sync prediction that outlives the server's limit ends in one final 4xx, not in a status the client
retries (503/504/520/524 would cost three more runs and 13 s of sleep)."""

from __future__ import annotations

import time
from typing import Any

from _common import NO_REQUIREMENTS, SMALL, client, emit, name, wait_status

from launch import EndpointRequest
from launch.errors import APIError


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def main() -> dict[str, Any]:
    c = client()
    c.create_model_bundle(name("slow"), {}, predict_fn_or_cls=slow, requirements=NO_REQUIREMENTS)
    endpoint = c.create_model_endpoint(name("slow"), name("slow"), **SMALL)
    wait_status(endpoint)
    started = time.monotonic()
    try:
        endpoint.predict(EndpointRequest(args={"seconds": 3}, return_pickled=False))
        error: dict[str, Any] = {"status": None}
    except APIError as exc:
        error = {"status": exc.status_code, "message": str(exc)}
    elapsed = time.monotonic() - started
    quick = endpoint.predict(EndpointRequest(args={"seconds": 0}, return_pickled=False))
    return {"error": error, "elapsed": elapsed, "quick": quick.result}


if __name__ == "__main__":
    emit(main())
