"""Small helpers for the end-to-end tests: unique names, bounded waits, raw HTTP, worker processes."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import cloudpickle
import httpx

from launch import LaunchClient
from tests.e2e import models
from tests.engines import RAY

# a fresh gateway's first connection to a Ray cluster goes through Ray's client proxy, which under the test
# suite's load has taken 40 s and more to accept it (logged as "Initialization failure from server", retried)
READY_TIMEOUT = 180.0 if RAY else 60.0

cloudpickle.register_pickle_by_value(models)

T = TypeVar("T")
SMALL = {"cpus": 1, "memory": "512Mi"}  # resources every test endpoint asks for


def unique(prefix: str) -> str:
    """A resource name no other test uses (the session server is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def wait_status(endpoint: Any, expected: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until an SDK endpoint's ``status()`` is ``expected`` (fails early on another final status)."""
    final = {"READY", "UPDATE_FAILED"}

    def settled() -> str | None:
        status = endpoint.status()
        if status in final and status != expected:
            reason = record(endpoint.client, endpoint.model_endpoint.name).get("status_reason")
            raise AssertionError(f"endpoint became {status}, expected {expected}; reason: {reason}")
        return status if status == expected else None

    wait_until(settled, timeout, f"status {expected}")


def record(client: LaunchClient, endpoint_name: str) -> dict[str, Any]:
    """The raw endpoint record (``GET /v1/model-endpoints/{name}``)."""
    return client.connection.request("GET", f"/v1/model-endpoints/{endpoint_name}")  # type: ignore[no-any-return]


def task(client: LaunchClient, task_id: str) -> dict[str, Any]:
    """The raw task record (``GET /v1/async-tasks/{id}``)."""
    return client.connection.request("GET", f"/v1/async-tasks/{task_id}")  # type: ignore[no-any-return]


def http(base_url: str, key: str | None = None, timeout: float = 30) -> httpx.Client:
    """A raw HTTP client, authenticated with ``key`` as HTTP basic user name when given."""
    return httpx.Client(base_url=base_url, auth=(key, "") if key else None, timeout=timeout, trust_env=False)


@contextmanager
def deployed(client: LaunchClient, bundle: Any, endpoint_type: str = "sync", timeout: float = READY_TIMEOUT,
             **settings: Any) -> Iterator[Any]:
    """A READY endpoint of ``bundle`` for the duration of the block, deleted afterwards."""
    name = unique(f"{endpoint_type}-ep")
    endpoint = client.create_model_endpoint(name, bundle, endpoint_type=endpoint_type,
                                            **{**SMALL, "per_worker": 4, **settings})
    try:
        wait_status(endpoint, "READY", timeout)
        yield endpoint
    finally:
        client.delete_model_endpoint(name)


# -- processes -------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields after "pid (comm) "


def children(parent: int) -> dict[int, str]:
    """pid → command line of the live child processes of ``parent`` (read from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or int(fields[1]) != parent or fields[0] in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry)] = cmdline
    return found


def descendants(parent: int) -> dict[int, str]:
    """pid → command line of every live process below ``parent``."""
    found: dict[int, str] = {}
    todo = [parent]
    while todo:
        level = children(todo.pop())
        found.update(level)
        todo.extend(level)
    return found


def all_processes() -> dict[int, str]:
    """pid → command line of every live process of this machine."""
    found = {}
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields is None or fields[0] in ("Z", "X"):
            continue
        try:
            found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def worker_pids(server_pid: int, endpoint_id: str | None = None) -> list[int]:
    """Worker processes of a server (of one endpoint when ``endpoint_id`` is given): the Python process that
    serves, not the sandbox (bubblewrap) around it. On a Ray cluster (whose nodes the tests run on this
    machine) workers are children of Ray's processes, not the server's: an endpoint's are found by its id."""
    processes = all_processes() if RAY and endpoint_id is not None else descendants(server_pid)
    return sorted(pid for pid, cmd in processes.items()
                  if "launch.worker.main" in cmd and not cmd.split(" ", 1)[0].endswith("bwrap")
                  and (endpoint_id is None or endpoint_id in cmd))


def process_identity(pid: int) -> int:
    """``models.process_identity()`` of the worker with host pid ``pid``: its uid and its pid as seen in its
    own PID namespace (the last ``NSpid`` field)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["Uid"].split()[0]) * 10_000_000 + int(status["NSpid"].split()[-1])


def parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields is not None else None


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (exited, or a zombie nobody reaped)."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


# -- a file server for url inputs ------------------------------------------------------------------------------


@contextmanager
def file_server(files: dict[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (path → bytes) over HTTP on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
