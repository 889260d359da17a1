"""Worker process entry point: ``python -m launch.worker.main '<spec json>'``.

Loads the bundle once, listens where the spec says (``unix:/path`` or ``tcp://host:port``), reports
``LAUNCH_WORKER_READY <address> <cold-start timestamps as JSON>`` on the original stdout (then closed; later
output goes to the log on stderr, each line timestamped) and serves until SIGTERM (on TCP, only connections
that first present ``LAUNCH_WORKER_TOKEN`` in a HELLO frame): it then rejects new work at once, lets running
predictions finish (up to ``drain_seconds``) and exits 0. A bundle that fails to load exits with code 3 and
its traceback in the log.
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the imports below: the cold-start timeline's "imports" phase starts here

import asyncio
import gc
import json
import os
import signal
import sys
import traceback
from typing import Any

import uvloop

from launch import wire
from launch.worker.logs import TimestampedStream
from launch.worker.runtime import Runtime, load_bundle
from launch.worker.server import WorkerServer

IMPORTED = time.time()

LOAD_FAILED_EXIT = 3
TOKEN_VARIABLE = "LAUNCH_WORKER_TOKEN"  # set by placements whose workers listen on TCP


async def serve(worker: WorkerServer, listen: str, drain_seconds: float, announce: Any) -> None:
    loop = asyncio.get_running_loop()
    if listen.startswith("unix:"):
        path = listen.removeprefix("unix:")
        server = await loop.create_unix_server(worker.protocol, path, backlog=2048)
        address = listen
    else:
        host, _, port = listen.removeprefix("tcp://").rpartition(":")
        server = await loop.create_server(worker.protocol, host, int(port), backlog=2048)
        bound = server.sockets[0].getsockname()
        address = f"tcp://{bound[0]}:{bound[1]}"
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(address)
    await stop.wait()
    print("worker: SIGTERM, draining", file=sys.stderr, flush=True)
    server.close()
    await worker.drain(drain_seconds)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    token_text = os.environ.pop(TOKEN_VARIABLE, "")  # not left for user code's subprocesses to inherit
    token = token_text.encode() if token_text else None
    runtime_config: dict[str, Any] = spec.get("runtime", {})
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # user prints go to the worker log, never into the ready pipe
    sys.stdout = sys.stderr = TimestampedStream(sys.__stderr__ or sys.stderr)
    print(f"worker {spec['worker_id']}: loading bundle", file=sys.stderr, flush=True)
    try:
        predict_fn = load_bundle(spec["bundle_path"], runtime_config)
    except BaseException:
        print("bundle failed to load:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
        return LOAD_FAILED_EXIT
    timeline = {"started": STARTED, "imported": IMPORTED, "loaded": time.time()}

    def announce(address: str) -> None:
        print(f"worker {spec['worker_id']}: ready on {address}", file=sys.stderr, flush=True)
        ready.write(f"LAUNCH_WORKER_READY {address} {json.dumps({**timeline, 'listening': time.time()})}\n")
        ready.close()

    worker = WorkerServer(Runtime(predict_fn, runtime_config.get("memory_limit")),
                          int(runtime_config.get("threads", 1)),
                          int(runtime_config.get("max_result_bytes", wire.MAX_PAYLOAD)), token)
    gc.freeze()  # the loaded model lives as long as the worker: keep it out of every garbage collection
    uvloop.run(serve(worker, spec.get("listen", "tcp://127.0.0.1:0"),
                     float(runtime_config.get("drain_seconds", 30)), announce))
    print(f"worker {spec['worker_id']}: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
