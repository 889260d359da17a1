"""Worker process entry point: ``python -m launch.worker.main '<spec json>'``.

Loads the bundle once, binds a loopback port, reports ``LAUNCH_WORKER_READY <port>`` on the original stdout
(which is then closed; later output goes to the log on stderr) and serves until SIGTERM, draining in-flight
requests before it exits 0. A bundle that fails to load exits with code 3 and its traceback in the log.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from typing import Any

import uvicorn

from launch.net_guard import FetchPolicy
from launch.worker.http import WorkerApp
from launch.worker.runtime import Runtime, load_bundle

LOAD_FAILED_EXIT = 3


def _policy(runtime: dict[str, Any]) -> FetchPolicy:
    fetch = runtime.get("fetch") or {}
    return FetchPolicy(
        allowed_schemes=frozenset(fetch.get("allowed_schemes", ["http", "https"])),
        allow_private=bool(fetch.get("allow_private", False)),
        max_bytes=int(fetch.get("max_bytes", 100 * 1024 * 1024)),
        timeout=float(fetch.get("timeout", 30.0)),
    )


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    runtime_config: dict[str, Any] = spec.get("runtime", {})
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # user prints go to the worker log, never into the ready pipe
    print(f"worker {spec['worker_id']}: loading bundle", file=sys.stderr, flush=True)
    try:
        predict_fn = load_bundle(spec["bundle_path"], runtime_config)
    except BaseException:
        print("bundle failed to load:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
        return LOAD_FAILED_EXIT
    app = WorkerApp(Runtime(predict_fn, _policy(runtime_config)), int(runtime_config.get("threads", 1)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # accept before announcing readiness: no refused first request
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, loop="uvloop", http="httptools",
        timeout_graceful_shutdown=int(runtime_config.get("drain_seconds", 30)), backlog=2048,
    )
    server = uvicorn.Server(config)
    print(f"worker {spec['worker_id']}: ready on port {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    ready.write(f"LAUNCH_WORKER_READY {sock.getsockname()[1]}\n")
    ready.close()
    server.run(sockets=[sock])
    print(f"worker {spec['worker_id']}: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
