"""Command bundles: the user's own HTTP server as a bundle (Launch's "runnable image" flavour, without an
image). The worker starts the command as its child, inside the same sandbox (so it listens on the sandbox's
own loopback: no other network), waits for its health route, then forwards each prediction to its predict
route. If the command exits, so does the worker, and the platform replaces it like any dead worker."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

COMMAND_EXITED = 4  # the worker's exit code when its command stops on its own
HEALTH_POLL_SECONDS = 0.05


class CommandFailed(Exception):
    """The command's server could not be started, or answered a prediction with an error status."""


class CommandServer:
    """A running command; calling it runs one prediction (``args`` as JSON, or a ``url`` input's bytes)."""

    def __init__(self, metadata: dict[str, Any], cwd: Path) -> None:
        self.port = int(metadata["port"])
        self.predict_route = str(metadata["predict_route"])
        self.health_route = str(metadata["healthcheck_route"])
        self.readiness_timeout = float(metadata.get("readiness_timeout_seconds", 300))
        bindir = os.path.dirname(sys.executable)  # "python" in the command is the bundle's environment's
        env = {**os.environ, "PORT": str(self.port), "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
               **{str(k): str(v) for k, v in (metadata.get("env") or {}).items()}}
        if not port_free(self.port):  # else the health checks and predictions would reach that other server
            raise CommandFailed(f"port {self.port} is already in use where this worker runs; a worker without a "
                                "network of its own (Ray nodes, sandbox_network=true) shares its host's ports, so "
                                "one worker of this bundle per host can listen on it")
        try:
            self.proc = subprocess.Popen(list(metadata["command"]), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=sys.stderr, stderr=sys.stderr)
        except OSError as exc:
            raise CommandFailed(f"the command {metadata['command']!r} could not be started: {exc}") from None
        atexit.register(self.stop)
        self._local = threading.local()

    def wait_healthy(self) -> None:
        """Return once ``GET health_route`` answers 200; ``CommandFailed`` if the command exits or is not
        healthy within its readiness timeout."""
        deadline = time.monotonic() + self.readiness_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise CommandFailed(f"the command exited with code {code} before {self.health_route} answered 200")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.health_route)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return
                last = f"{self.health_route} answered {response.status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(HEALTH_POLL_SECONDS)
        raise CommandFailed(f"the command's server on port {self.port} was not healthy within "
                            f"{self.readiness_timeout:g} s ({last})")

    def watch(self) -> None:
        """End the worker when the command ends (the platform then replaces the worker)."""
        def wait() -> None:
            code = self.proc.wait()
            if code == -signal.SIGTERM:  # the platform is stopping this worker (and every process of it)
                return
            print(f"worker: the command exited with code {code}; stopping", file=sys.stderr, flush=True)
            os._exit(COMMAND_EXITED)

        threading.Thread(target=wait, name="command-watch", daemon=True).start()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
        return conn

    def __call__(self, *data: bytes, **args: Any) -> Any:
        if data:
            body, content_type = bytes(data[0]), "application/octet-stream"
        else:
            body, content_type = json.dumps(args).encode(), "application/json"
        for attempt in range(2):  # a kept-alive connection the server closed is reopened once
            conn = self._connection()
            try:
                conn.request("POST", self.predict_route, body, {"Content-Type": content_type})
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if response.status >= 300:
            text = payload[:2000].decode("utf-8", "replace")
            raise CommandFailed(f"POST {self.predict_route} answered {response.status}: {text}")
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise CommandFailed(f"POST {self.predict_route} answered with a body that is not JSON: "
                                f"{payload[:200]!r}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` of this network's loopback (connections lingering in TIME_WAIT do not
    count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_command(archive: BinaryIO, workdir: Path, metadata: dict[str, Any]) -> CommandServer:
    """Unpack the bundle's directory, start its command and wait until it is healthy."""
    from launch.worker.runtime import extract_zip

    extract_zip(archive, workdir)
    directory = metadata.get("directory")
    cwd = workdir / directory if directory else workdir
    server = CommandServer(metadata, cwd)
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    server.watch()
    return server
