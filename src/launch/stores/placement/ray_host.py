"""The Ray actor that hosts one worker process on the node Ray placed it on (imported on the nodes: it needs
nothing of the server). The worker listens on the node's address over TCP and serves only connections that
present its token first (``launch.wire.HELLO``); the bundle arrives as bytes through Ray's object store."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READY_PREFIX = b"LAUNCH_WORKER_READY "


class WorkerHost:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="launch-worker-"))
        self.log_path = self.root / "worker.log"

    def start(self, config: dict[str, Any], bundle: bytes, token: str, host: str, timeout: float) -> str:
        """Start the worker; returns its address once it serves, raises with its log tail if it cannot."""
        bundle_path = self.root / "bundle"
        bundle_path.write_bytes(bundle)
        runtime = dict(config.get("runtime", {}))
        runtime["workdir"] = str(self.root / "work")
        config = {**config, "runtime": runtime, "bundle_path": str(bundle_path), "listen": f"tcp://{host}:0"}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "TMPDIR": str(self.root),
               "LANG": "C.UTF-8", "LAUNCH_WORKER_TOKEN": token}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-u", "-m", "launch.worker.main", json.dumps(config)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
                                         start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
                for line in buffer.splitlines():
                    if line.startswith(READY_PREFIX):
                        # ``<address> [cold-start timestamps]``: the address is the first word
                        return line[len(READY_PREFIX):].strip().decode().partition(" ")[0]
            elif self.proc.poll() is not None:
                break
        try:  # its stdout closed: it is exiting (or exited)
            code: int | None = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        self.stop(1.0)
        why = "did not become ready in time" if code is None else f"exited with code {code} while loading the bundle"
        raise RuntimeError(f"worker {why}\n{tail}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace: float) -> None:
        """SIGTERM (the worker drains), then SIGKILL to its whole session after ``grace`` seconds."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
