"""The Ray actor that hosts one worker process on the node Ray placed it on (imported on the nodes: it needs
nothing of the server). The worker listens on the node's address over TCP and serves only connections that
present its token first (``launch.wire.HELLO``); the bundle arrives as bytes through Ray's object store.
A bundle whose requirements need an environment of its own gets it built here first, by the gateway's rules
(``launch.server.environments``), cached per node under ``LAUNCH_RAY_ENVIRONMENTS`` (default
``$TMPDIR/launch-environments``), one build at a time per node.
The worker's log stays on the node; the gateway reads it in pieces (``poll``) into the endpoint's logs.
The worker dies with this actor's process (PR_SET_PDEATHSIG), e.g. when Ray ends the actor of a gateway
that is gone.

Where bubblewrap runs on the node (``sandbox`` auto or required, as for local workers) the worker runs in the
same sandbox as a local one (``sandbox.sandbox_argv``: its own uid from the node's pool, own mount/PID/IPC
namespaces, read-only interpreter, a private scratch directory, its bundle as a file descriptor), but on the
node's network (the gateways reach it over TCP), with rlimits for its memory and processes; ``required``
refuses to start a worker on a node without it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
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

from launch.stores.placement import limits as limits_mod
from launch.stores.placement import sandbox
from launch.stores.placement.ready_line import parse_ready_line

LOG_CHUNK = 1 << 20  # at most this much of the worker's log per poll
_PR_SET_PDEATHSIG = 1


class WorkerHost:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="launch-worker-"))
        self.log_path = self.root / "worker.log"
        self.uid: int | None = None  # the sandboxed worker's own uid
        self._uids: Any = None  # the node's UidPool (its lock holds the uid while the worker lives)

    def start(self, config: dict[str, Any], bundle: bytes, token: str, host: str, timeout: float
              ) -> dict[str, Any]:
        """Start the worker (building its environment first if it needs one); once it serves returns its
        ``address``, its cold-start ``timeline`` (wall-clock times: spawned, then the worker's own, then ready),
        its ``environment`` (server, cached, built) with ``environment_seconds`` and its ``log`` so far. If it
        cannot start, returns instead the ``error``, whether it would happen again on every attempt
        (``deterministic``: the environment cannot be built) and the whole ``log``."""
        began = time.monotonic()
        try:
            python, environment = self._environment(list(config.pop("requirements", None) or []),
                                                    config.pop("python_minor", None))
        except Exception as exc:  # its message carries the installer's output
            return {"error": str(exc), "deterministic": True, "log": self.read_log(0, limit=None)}
        environment_seconds = time.monotonic() - began
        bundle_path = self.root / "bundle"
        bundle_path.write_bytes(bundle)
        containment = dict(config.pop("sandbox", None) or {})
        runtime = dict(config.get("runtime", {}))
        argv, env, limits = self._command(python, containment, token, runtime)
        bundle_fd = os.open(bundle_path, os.O_RDONLY | os.O_CLOEXEC)
        config = {**config, "runtime": runtime, "bundle_path": f"fd:{bundle_fd}", "listen": f"tcp://{host}:0"}

        def prepare_child() -> None:  # between fork and exec
            _die_with_parent()
            limits_mod.enter([], limits, use_rlimits=True)

        spawned = time.time()
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([*argv, json.dumps(config)], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
                                             preexec_fn=prepare_child, pass_fds=(bundle_fd,))
        finally:
            os.close(bundle_fd)
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
                    announced = parse_ready_line(line)
                    if announced is not None:
                        address, stamps = announced
                        timeline = {"spawned": spawned, **stamps, "ready": time.time()}
                        return {"address": address, "timeline": timeline, "environment": environment,
                                "environment_seconds": environment_seconds, "log": self.read_log(0)}
            elif self.proc.poll() is not None:
                break
        try:  # its stdout closed: it is exiting (or exited)
            code: int | None = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        whole_log = self.read_log(0, limit=None)
        self.stop(1.0)
        why = "did not become ready in time" if code is None else f"exited with code {code} while loading the bundle"
        return {"error": f"worker {why}", "deterministic": False, "log": whole_log}

    def _command(self, python: str, containment: dict[str, Any], token: str, runtime: dict[str, Any]
                 ) -> tuple[list[str], dict[str, str], limits_mod.Limits]:
        """The worker's argv (without its spec), environment and limits: in the sandbox when the node can run
        it and the gateway's ``sandbox`` setting allows, else as a plain process of the actor's user."""
        limits = limits_mod.Limits(memory_bytes=limits_mod.parse_memory(containment.get("memory")), cpus=None,
                                   pids=containment.get("pids_limit"))
        mode = containment.get("mode", "off")
        tools, reason = sandbox.find_tools() if mode != "off" else (None, "disabled (sandbox=off)")
        if tools is None:
            if mode == "required":
                raise RuntimeError(f"the worker sandbox is required but unavailable on this Ray node: {reason}")
            runtime["workdir"] = str(self.root / "work")
            limits = limits_mod.Limits(memory_bytes=limits.memory_bytes, cpus=None, pids=None)  # the user's count
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
                   "TMPDIR": str(self.root), "LANG": "C.UTF-8", "LAUNCH_WORKER_TOKEN": token}
            return [python, "-u", "-m", "launch.worker.main"], env, limits
        self._uids = sandbox.UidPool(int(containment["uid_base"]), int(containment["uid_count"]))
        self.uid = self._uids.acquire()
        if self.uid is None:
            raise RuntimeError(f"no free worker uid on this Ray node: all {containment['uid_count']} from "
                               f"{containment['uid_base']} are in use (LAUNCH_SANDBOX_UID_COUNT)")
        scratch, sockets = self.root / "scratch", self.root / "sock"
        for directory in (scratch, sockets):
            directory.mkdir(mode=0o700)
            os.chown(directory, self.uid, self.uid)
        paths = sandbox.SandboxPaths(readable=sandbox.import_paths(python, self.root), scratch=str(scratch),
                                     socket_dir=str(sockets), uid=self.uid, network=True)
        runtime["workdir"] = f"{sandbox.INSIDE_SCRATCH}/bundle"
        command = [python, "-I", "-u", "-m", "launch.worker.main"]
        # the environment is exactly this (not the actor's): the token reaches the worker without an argv
        env = {**sandbox.SAFE_ENV, "LAUNCH_WORKER_TOKEN": token}
        return sandbox.sandbox_argv(tools.bwrap, tools.setpriv, paths, command, clear_env=False), env, limits

    def _environment(self, requirements: list[str], python_minor: str | None) -> tuple[str, str]:
        """The interpreter for the bundle on this node, and how it was had (its build's output goes to the
        worker's log)."""
        from launch.server.environments import SERVER_MINOR, Environments, satisfied_here

        if (python_minor is None or python_minor == SERVER_MINOR) and (not requirements
                                                                       or satisfied_here(requirements)):
            return sys.executable, "server"
        root = Path(os.environ.get("LAUNCH_RAY_ENVIRONMENTS") or Path(tempfile.gettempdir()) / "launch-environments")
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:  # the node's workers share the cache: one build at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            return asyncio.run(Environments(root).resolve(requirements, self.log_path, python_minor))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self, offset: int) -> tuple[bool, bytes]:
        """(whether the worker runs, what it logged from byte ``offset`` on: see ``read_log``)."""
        return self.alive(), self.read_log(offset)

    def read_log(self, offset: int, limit: int | None = LOG_CHUNK) -> bytes:
        """The log from byte ``offset`` on: complete lines only (a line being written comes next time), unless
        ``limit`` cuts it or is None (the worker has stopped: everything)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(-1 if limit is None else limit)
        except OSError:
            return b""
        if limit is not None and len(data) < limit:
            data = data[:data.rfind(b"\n") + 1]
        return data

    def stop(self, grace: float, offset: int | None = None) -> bytes:
        """SIGTERM (the worker drains), then SIGKILL to its whole session after ``grace`` seconds; returns the
        rest of its log from byte ``offset`` (nothing when None)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # in the sandbox the worker is every process of its uid (bubblewrap does not pass signals on)
            for pid in limits_mod.processes_of(self.uid) if self.uid is not None else [proc.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.uid is not None:
            limits_mod.kill_uid(self.uid)
            self._uids.release(self.uid)
            self.uid = None
        rest = self.read_log(offset, limit=None) if offset is not None else b""
        shutil.rmtree(self.root, ignore_errors=True)
        return rest


def _die_with_parent() -> None:
    """In the worker, between fork and exec: be killed when the actor's process dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

