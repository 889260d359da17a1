"""Workers as child processes of the server on this machine, each contained (see ``sandbox`` and ``limits``).

Each worker prints ``LAUNCH_WORKER_READY <address>`` on its stdout pipe once its bundle is loaded and then
closes it; everything else it (or user code) prints goes to a log file (the endpoint's creation logs).
Workers listen on a Unix socket in a directory of their own, die with the server (``--die-with-parent``,
or PR_SET_PDEATHSIG without the sandbox) and run in their own session, so a terminal's Ctrl-C reaches only
the server, which then stops them in order. Stopping a worker ends every process it started: with the
sandbox each worker has a uid no other process has, and every process of that uid is killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from launch.stores.objects import ObjectStore
from launch.stores.placement import WorkerHandle, WorkerSpec, WorkerStartError, log_tail
from launch.stores.placement import limits as limits_mod
from launch.stores.placement.bundles import BundleFiles
from launch.stores.placement.limits import Limits, ResourceLimiter, WorkerCgroup
from launch.stores.placement.ready_line import parse_ready_line
from launch.stores.placement.sandbox import (
    INSIDE_SCRATCH,
    INSIDE_SOCKET_DIR,
    SAFE_ENV,
    SOCKET_NAME,
    SandboxPaths,
    SandboxTools,
    UidPool,
    find_tools,
    import_paths,
    sandbox_argv,
)

log = logging.getLogger("launch.placement")
SOCKET_DIR_PREFIX = "launch-sockets-"
WORKER_OOM_SCORE = 1000  # the kernel's first choice when memory runs out: a worker, never the gateway
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LocalOptions:
    """How local workers are contained (from the server's settings)."""

    hidden: Path  # the data directory: never visible to workers
    sandbox: str = "auto"  # auto: sandbox where the host can; required: refuse to run without; off
    network: bool = False  # sandboxed workers share the host's network (else: none at all)
    uid_base: int = 524288
    uid_count: int = 65536
    pids_limit: int = 512
    bundle_cache: Path | None = None  # where bundles of a remote object store are downloaded to


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    socket_dir: Path
    scratch: Path | None
    uid: int | None
    cgroup: WorkerCgroup | None
    memory: str | None


class SandboxUnavailable(RuntimeError):
    """``sandbox=required`` on a host that cannot run the sandbox."""


class LocalPlacement:
    gpus = False  # no GPU scheduling on this host (yet)
    builds_environments = False  # the gateway builds them on this host

    def __init__(self, options: LocalOptions | None = None, objects: ObjectStore | None = None) -> None:
        self.options = options or LocalOptions(hidden=Path(tempfile.gettempdir()) / "launch-no-data-dir")
        cache = self.options.bundle_cache or self.options.hidden / "bundle-cache"
        self.bundles = BundleFiles(objects, cache) if objects is not None else None
        self._workers: dict[str, _Worker] = {}
        self._reasons: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._uids = UidPool(self.options.uid_base, self.options.uid_count)
        # Unix sockets are cheaper than loopback TCP; a short directory keeps paths under the 108-byte limit.
        self._socket_root = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
        self.tools: SandboxTools | None = None
        sandbox_reason = "disabled by the operator (sandbox=off)"
        if self.options.sandbox != "off":
            self.tools, sandbox_reason = find_tools()
            if self.tools is None and self.options.sandbox == "required":
                raise SandboxUnavailable(f"the worker sandbox is required but unavailable: {sandbox_reason}")
        self.sandbox_reason = sandbox_reason
        self.limiter = ResourceLimiter.detect()
        self.gateway_protected = limits_mod.adjust_oom_score("self", -900)

    def describe(self) -> list[str]:
        """The protections in force for workers, one line each, saying where the host lacks one."""
        o = self.options
        if self.tools is not None:
            network = "the host's network (sandbox_network=true)" if o.network else "no network"
            sandbox = (f"sandbox: bubblewrap, one unprivileged uid per worker, own mount/PID/IPC namespaces, "
                       f"{network}, read-only interpreter and bundle, private scratch dir")
        else:
            sandbox = (f"sandbox: NOT IN FORCE ({self.sandbox_reason}); workers run as the server's user and can "
                       "read its data directory")
        gateway = ("gateway oom_score_adj -900" if self.gateway_protected
                   else "gateway oom_score_adj not lowered (needs CAP_SYS_RESOURCE), workers are chosen first")
        return [sandbox, f"limits: {self.limiter.describe()}; pids per worker {o.pids_limit}",
                f"memory pressure: workers oom_score_adj {WORKER_OOM_SCORE}; {gateway}"]

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
        if self.bundles is None:
            raise WorkerStartError("this placement was built without an object store to read bundles from")
        try:
            bundle_path = await self.bundles.path(spec.bundle_key)
        except KeyError:
            raise WorkerStartError(f"the bundle's object {spec.bundle_key!r} is missing from the object store"
                                   ) from None
        socket_dir = self._socket_root / spec.worker_id
        socket_dir.mkdir(mode=0o700)
        memory = limits_mod.parse_memory(spec.memory)
        limits = Limits(memory_bytes=memory, cpus=spec.cpus, pids=self.options.pids_limit)
        cgroup = self.limiter.create(spec.worker_id, limits)
        uid = self._uids.acquire() if self.tools is not None else None
        if self.tools is not None and uid is None:
            raise WorkerStartError(f"no free worker uid: all {self.options.uid_count} from "
                                   f"{self.options.uid_base} are in use (LAUNCH_SANDBOX_UID_COUNT)")
        scratch = Path(str(spec.runtime.get("workdir") or socket_dir / "scratch"))
        worker = _Worker(proc=None, socket_dir=socket_dir, scratch=scratch, uid=uid,  # type: ignore[arg-type]
                         cgroup=cgroup, memory=spec.memory)
        argv, config = self._command(spec, worker)
        join = cgroup.join_paths() if cgroup is not None else []
        use_rlimits = cgroup is None

        def prepare_child() -> None:  # in the child, between fork and exec
            _die_with_parent()
            limits_mod.enter(join, limits, use_rlimits)
            with contextlib.suppress(OSError):
                fd = os.open(b"/proc/self/oom_score_adj", os.O_WRONLY)
                os.write(fd, str(WORKER_OOM_SCORE).encode())
                os.close(fd)

        bundle_fd = os.open(bundle_path, os.O_RDONLY | os.O_CLOEXEC)
        spawned = time.time()
        config["bundle_path"] = f"fd:{bundle_fd}"
        try:
            with open(spec.log_path, "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv, json.dumps(config), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=log_file, start_new_session=True, preexec_fn=prepare_child, env=self._environment(),
                    pass_fds=(bundle_fd,),
                )
        finally:
            os.close(bundle_fd)
        worker.proc = proc
        self._workers[spec.worker_id] = worker
        try:
            address, timeline = await asyncio.wait_for(_read_ready_line(proc), spec.start_timeout)
        except (TimeoutError, WorkerStartError) as exc:
            reason = self.exit_reason(spec.worker_id) or (
                "did not become ready in time" if isinstance(exc, TimeoutError) else str(exc))
            await self.stop(spec.worker_id, grace=1.0)
            raise WorkerStartError(f"worker {reason}", log_tail(spec.log_path)) from None
        if address.startswith("unix:" + INSIDE_SOCKET_DIR):  # the sandbox's path of the socket, seen from here
            address = f"unix:{socket_dir / address.removeprefix('unix:' + INSIDE_SOCKET_DIR).lstrip('/')}"
        return WorkerHandle(spec.worker_id, address, proc.pid, {"spawned": spawned, **timeline, "ready": time.time()})

    def _command(self, spec: WorkerSpec, worker: _Worker) -> tuple[list[str], dict[str, object]]:
        """The argv (without the spec argument) and the spec JSON the worker process gets."""
        runtime = dict(spec.runtime)
        assert worker.scratch is not None
        if self.tools is None or worker.uid is None:  # unsandboxed: host paths as they are
            worker.scratch.mkdir(parents=True, exist_ok=True)
            runtime["workdir"] = str(worker.scratch / "bundle")
            argv = [spec.python, "-u", "-m", "launch.worker.main"]
            listen = f"unix:{worker.socket_dir / SOCKET_NAME}"
        else:
            for directory in (worker.scratch, worker.socket_dir):
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.chown(directory, worker.uid, worker.uid)
            paths = SandboxPaths(
                readable=import_paths(spec.python, self.options.hidden),
                scratch=str(worker.scratch), socket_dir=str(worker.socket_dir), uid=worker.uid,
                network=self.options.network,
            )
            runtime["workdir"] = f"{INSIDE_SCRATCH}/bundle"
            command = [spec.python, "-I", "-u", "-m", "launch.worker.main"]
            argv = sandbox_argv(self.tools.bwrap, self.tools.setpriv, paths, command)
            listen = f"unix:{INSIDE_SOCKET_DIR}/{SOCKET_NAME}"
        return argv, {"worker_id": spec.worker_id, "endpoint_id": spec.endpoint_id, "runtime": runtime,
                      "listen": listen}

    def _environment(self) -> dict[str, str]:
        """Workers inherit nothing of the server's environment (no store URLs, keys or credentials)."""
        env = dict(SAFE_ENV)
        env["PATH"] = os.environ.get("PATH", env["PATH"]) if self.tools is None else env["PATH"]
        if self.tools is None:
            env["HOME"] = os.environ.get("HOME", "/tmp")
            env["TMPDIR"] = tempfile.gettempdir()
        return env

    async def stop(self, worker_id: str, grace: float) -> None:
        worker = self._workers.pop(worker_id, None)
        if worker is None:
            return
        proc = worker.proc
        try:
            if proc.returncode is None:
                self._signal(worker, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._clean_up, worker_id, worker)

    def _signal(self, worker: _Worker, sig: int) -> None:
        """Signal the worker process itself (inside the sandbox: every process of its uid)."""
        if worker.uid is not None:
            for pid in limits_mod.processes_of(worker.uid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)

    def _clean_up(self, worker_id: str, worker: _Worker) -> None:
        """After the worker exited: end what it left behind, remember why it died, free its uid and dirs."""
        if worker.uid is not None:
            limits_mod.kill_uid(worker.uid)
        elif worker.proc.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.proc.pid, signal.SIGKILL)
        reason = self._oom_reason(worker)
        if reason:
            self._reasons[worker_id] = reason
            while len(self._reasons) > 1000:
                self._reasons.popitem(last=False)
        if worker.cgroup is not None:
            worker.cgroup.remove()
        shutil.rmtree(worker.socket_dir, ignore_errors=True)
        if worker.scratch is not None:
            shutil.rmtree(worker.scratch, ignore_errors=True)
        if worker.uid is not None:
            self._uids.release(worker.uid)

    def _oom_reason(self, worker: _Worker) -> str | None:
        if worker.cgroup is not None and worker.cgroup.oom_kills() > 0:
            return f"worker exceeded its memory limit of {worker.memory}"
        return None

    def exit_reason(self, worker_id: str) -> str | None:
        """Why a worker died, where the platform knows better than a lost connection (its memory limit)."""
        worker = self._workers.get(worker_id)
        if worker is not None:
            return self._oom_reason(worker)
        return self._reasons.get(worker_id)

    def alive(self, worker_id: str) -> bool:
        worker = self._workers.get(worker_id)
        return worker is not None and worker.proc.returncode is None

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(wid, grace=5.0) for wid in list(self._workers)))
        shutil.rmtree(self._socket_root, ignore_errors=True)
        self.limiter.close()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def _read_ready_line(proc: asyncio.subprocess.Process) -> tuple[str, dict[str, float]]:
    """The worker's address and its cold-start timestamps (``LAUNCH_WORKER_READY <address> [json]``)."""
    assert proc.stdout is not None
    while True:
        line = await proc.stdout.readline()
        if not line:
            code = await proc.wait()
            raise WorkerStartError(f"exited with code {code} while loading the bundle")
        ready = parse_ready_line(line)
        if ready is not None:
            return ready

