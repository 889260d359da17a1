"""Shared fixtures: a real ``launch server`` process on a free loopback port, and API keys for two users."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.engines import engine_env

REPO = Path(__file__).resolve().parents[1]
LAUNCH = str(Path(sys.executable).with_name("launch"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_key(data_dir: Path, user: str, engines: dict[str, str] | None = None, admin: bool = False) -> str:
    """A new key for ``user`` (an operator key with ``admin``), made by the CLI on the server's engines."""
    out = subprocess.run([LAUNCH, "api-keys", "create", "--user", user, "--data-dir", str(data_dir),
                          *(["--admin"] if admin else [])],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, **(engine_env(data_dir) if engines is None else engines)})
    return out.stdout.strip().splitlines()[-1]


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_args: tuple[str, ...] = ()
    engines: dict[str, str] = field(default_factory=dict)

    def key(self, user: str, admin: bool = False) -> str:
        return create_key(self.data_dir, user, self.engines, admin)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Servers started here host every test module's endpoints at once on a small machine: generous host capacity
# and per-owner quotas (the tests of those limits pass their own values through ``env``).
ROOMY = {"LAUNCH_HOST_CPUS": "64", "LAUNCH_HOST_MEMORY": "256Gi", "LAUNCH_MAX_ENDPOINTS_PER_OWNER": "1000",
         "LAUNCH_MAX_WORKERS_PER_OWNER": "10000"}


def start_server(data_dir: Path, port: int | None = None, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 90, engines: dict[str, str] | None = None) -> RunningServer:
    """Start ``launch server`` and wait until ``/healthz`` answers 200. It runs on the engines of
    ``tests.engines`` for ``data_dir`` unless ``engines`` are given."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    engines = engine_env(data_dir) if engines is None else engines
    log_path = data_dir / f"server-{port}.log"
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [LAUNCH, "server", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
             "--allow-private-fetch", "--log-level", "warning", *args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ROOMY, **engines, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return RunningServer(url, data_dir, process, log_path, args, engines)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the whole session (tests use their own resource names)."""
    running = start_server(tmp_path_factory.mktemp("launch-data"))
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="session")
def alice_key(server: RunningServer) -> str:
    return server.key("alice")


@pytest.fixture(scope="session")
def bob_key(server: RunningServer) -> str:
    return server.key("bob")


def wait_ready(endpoint: object, timeout: float = 60) -> str:
    """Poll an SDK endpoint's ``status()`` until READY or UPDATE_FAILED (returns the status)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = endpoint.status()  # type: ignore[attr-defined]
        if status in ("READY", "UPDATE_FAILED"):
            return str(status)
        time.sleep(0.1)
    raise AssertionError(f"endpoint still {status} after {timeout} s")
