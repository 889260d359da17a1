"""Helpers for the scenario scripts. These run under .venv-legacy/bin/python, where ``launch`` is Scale's own
scale-launch 0.3.3 client, and print one JSON line (prefixed by ``RESULT_MARK``) for the pytest side to check.

Configuration comes from the environment set by tests/legacy/conftest.py: LEGACY_BASE (the client's base URL),
LEGACY_SERVER (our server's root URL), LEGACY_KEY / LEGACY_OTHER_KEY (API keys of two users), LEGACY_PREFIX
(unique name prefix for this run) and LEGACY_FILES (a local static file server for ``url`` inputs).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import requests

from launch import LaunchClient
from launch.errors import APIError

RESULT_MARK = "LEGACY-RESULT "
BASE = os.environ["LEGACY_BASE"]
SERVER = os.environ["LEGACY_SERVER"]
KEY = os.environ["LEGACY_KEY"]
OTHER_KEY = os.environ.get("LEGACY_OTHER_KEY", "")
PREFIX = os.environ["LEGACY_PREFIX"]
FILES = os.environ.get("LEGACY_FILES", "")
NO_REQUIREMENTS: list[str] = []  # skip the client's inferred requirements (they build a venv per bundle)
SMALL = {"cpus": 1, "memory": "1Gi"}


def client(key: str = KEY, **kwargs: Any) -> LaunchClient:
    return LaunchClient(api_key=key, endpoint=BASE, **kwargs)


def name(suffix: str) -> str:
    return f"{PREFIX}-{suffix}"


def api_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int | None:
    """The status code of the APIError ``fn`` raises, or None when it succeeds."""
    try:
        fn(*args, **kwargs)
    except APIError as exc:
        return int(exc.status_code)
    return None


def wait_status(endpoint: Any, wanted: tuple[str, ...] = ("READY", "UPDATE_FAILED"), timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = endpoint.status()
        if status in wanted:
            return str(status)
        time.sleep(0.1)
    raise AssertionError(f"endpoint {endpoint.model_endpoint.name} still {status} after {timeout} s")


def wait_gone(c: LaunchClient, endpoint_name: str, timeout: float = 30) -> bool:
    """Deletion is asynchronous (DELETE_IN_PROGRESS first): wait until the endpoint 404s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.get_model_endpoint(endpoint_name) is None:
            return True
        time.sleep(0.1)
    return False


def download(url: str) -> bytes:
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.content


def unpickle_url(url: str) -> Any:
    return cloudpickle.loads(download(url))


def raw(c: LaunchClient, route: str) -> Any:
    """A GET through the client's own connection, to see fields its model classes drop."""
    return c.connection.get(route)


def wait_batch(c: LaunchClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = c.get_batch_async_response(job_id)
        if response["status"] in ("SUCCESS", "FAILURE"):
            return dict(response)
        time.sleep(0.2)
    raise AssertionError(f"batch job {job_id} did not finish in {timeout} s")


def emit(result: dict[str, Any]) -> None:
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)
