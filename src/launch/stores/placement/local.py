"""Workers as child processes of the server, on loopback ports they pick themselves.

Each worker prints ``LAUNCH_WORKER_READY <port>`` on its stdout pipe once its bundle is loaded and then
closes it; everything else it (or user code) prints goes to a log file (the endpoint's creation logs).
Workers die with the server (PR_SET_PDEATHSIG) and run in their own session so a terminal's Ctrl-C
reaches only the server, which then stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from launch.stores.placement import WorkerHandle, WorkerSpec, WorkerStartError, log_tail

READY_PREFIX = b"LAUNCH_WORKER_READY "
SOCKET_DIR_PREFIX = "launch-sockets-"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalPlacement:
    def __init__(self) -> None:
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        # Unix sockets are cheaper than loopback TCP; a short directory keeps paths under the 108-byte limit.
        self._socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
        spawned = time.time()
        with open(spec.log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                spec.python, "-m", "launch.worker.main", json.dumps(self._spec_json(spec)),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
                start_new_session=True, preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._procs[spec.worker_id] = proc
        try:
            address, timeline = await asyncio.wait_for(_read_ready_line(proc), spec.start_timeout)
        except (TimeoutError, WorkerStartError) as exc:
            await self.stop(spec.worker_id, grace=1.0)
            reason = "did not become ready in time" if isinstance(exc, TimeoutError) else str(exc)
            raise WorkerStartError(f"worker {reason}", log_tail(spec.log_path)) from None
        return WorkerHandle(spec.worker_id, address, proc.pid, {"spawned": spawned, **timeline, "ready": time.time()})

    async def stop(self, worker_id: str, grace: float) -> None:
        proc = self._procs.pop(worker_id, None)
        (self._socket_dir / f"{worker_id}.sock").unlink(missing_ok=True)
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def alive(self, worker_id: str) -> bool:
        proc = self._procs.get(worker_id)
        return proc is not None and proc.returncode is None

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(wid, grace=5.0) for wid in list(self._procs)))
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _spec_json(self, spec: WorkerSpec) -> dict[str, object]:
        return {"worker_id": spec.worker_id, "bundle_path": spec.bundle_path, "runtime": spec.runtime,
                "listen": f"unix:{self._socket_dir / spec.worker_id}.sock"}


async def _read_ready_line(proc: asyncio.subprocess.Process) -> tuple[str, dict[str, float]]:
    """The worker's address and its cold-start timestamps (``LAUNCH_WORKER_READY <address> [json]``)."""
    assert proc.stdout is not None
    while True:
        line = await proc.stdout.readline()
        if not line:
            code = await proc.wait()
            raise WorkerStartError(f"exited with code {code} while loading the bundle")
        if line.startswith(READY_PREFIX):
            address, _, rest = line[len(READY_PREFIX):].strip().decode().partition(" ")
            return address, _timeline(rest)


def _timeline(text: str) -> dict[str, float]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
