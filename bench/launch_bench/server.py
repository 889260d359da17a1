"""Start a server pinned to the server core, wait until it answers, stop it with its whole process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from launch_bench import procs

SERVER_CORE = "0"
LOADGEN_CORE = "1"
PINNED_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServerProcess:
    """One server command, run as `taskset -c 0 CMD` in its own session with output sent to a log file."""

    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        full_env = {**os.environ, **PINNED_ENV, **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *argv],
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout_s: float) -> float:
        """Poll url until it answers 2xx; returns seconds since spawn. Raises if it dies or times out."""
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            if http_ok(url, timeout_s=1.0):
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s; see {self.log_path}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the session, then SIGKILL whatever of the tree is left."""
        roots = [self.pid]
        members = procs.tree(roots)
        procs.kill_tree(roots, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        procs.kill_tree(roots, signal.SIGKILL)
        procs.signal_members(members, signal.SIGKILL)  # orphans re-parented to init left the tree
        if self.proc.poll() is None:
            self.proc.wait(timeout=grace_s)
        self._log.close()
