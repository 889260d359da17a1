"""Workers on a Ray cluster (``ray://head:10001``): each worker is a process started by a Ray actor
(``ray_host.WorkerHost``) that Ray places on a node with the worker's ``cpus``, ``memory`` and ``gpus`` free;
the reconciler's autoscaling decisions are the same as for local workers.

Workers listen on TCP on their node and serve only the gateway connections that present their per-worker token
first (``launch.wire.HELLO``; the address handed back carries it as ``tcp://host:port#token``). Bundles are
shipped as bytes (read from the object store, carried by Ray's object store). Workers run on the nodes'
interpreter, which must have Launch installed with its server extra (the cluster's image); on nodes where
bubblewrap runs they are sandboxed as local workers are (``ray_host``; the server's ``sandbox`` setting
applies per node), and contained by what the nodes are (containers) in any case. Bundles whose requirements
need an environment of their own get it built on the node, by the same rules as on the gateway
(``launch.server.environments``), cached per node. Each worker's log is copied
from its node into the worker's log file here about once a second (and at its stop), so the endpoint's logs
read the same as with local workers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from launch.stores.objects import ObjectStore
from launch.stores.placement import WorkerHandle, WorkerSpec, WorkerStartError
from launch.stores.placement.limits import parse_memory

log = logging.getLogger("launch.placement.ray")
MONITOR_SECONDS = 1.0
CONNECT_ATTEMPTS = 5
# how long the cluster keeps a gateway's session (and its workers) after losing the connection (Ray's default:
# 30 s); a gateway that died leaves its workers running no longer than this
RECONNECT_GRACE_SECONDS = "5"
# how long closing waits for a connection still being made, then for ray.shutdown (the gateway's stop is bounded)
CLOSE_WAIT_SECONDS = 10.0
T = TypeVar("T")


class RayPlacement:
    gpus = True  # GPU endpoints are placed on nodes with free GPUs
    builds_environments = True  # on the node a worker lands on (ray_host)

    def __init__(self, url: str, objects: ObjectStore, options: Any = None) -> None:
        """``options``: the server's ``LocalOptions`` (its sandbox settings apply on the nodes too)."""
        self.url = url
        self.objects = objects
        self.sandbox = getattr(options, "sandbox", "auto")
        self.sandbox_options = {"mode": self.sandbox, "uid_base": getattr(options, "uid_base", 524288),
                                "uid_count": getattr(options, "uid_count", 65536),
                                "pids_limit": getattr(options, "pids_limit", 512)}
        self._actors: dict[str, Any] = {}  # serving workers' actors
        self._starting: dict[str, Any] = {}
        self._dead: set[str] = set()
        self._reasons: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._logs: dict[str, _Log] = {}  # worker id -> where its log is copied to
        self._connected = asyncio.Lock()
        self._connecting: asyncio.Future[None] | None = None  # ray.init, in its own thread
        self._monitor: asyncio.Task[None] | None = None
        self._host_class: Any = None

    def describe(self) -> list[str]:
        sandbox = {"off": "no sandbox (sandbox=off)",
                   "required": "the sandbox on every node (sandbox=required: a node without bubblewrap starts no "
                               "worker)"}.get(self.sandbox, "the sandbox on nodes where bubblewrap runs (sandbox=auto)")
        return [f"placement: Ray cluster at {self.url}; workers are processes of Ray actors placed by their "
                f"cpus/memory/gpus, on TCP with a per-worker token, in {sandbox}, on the node's network, with "
                "rlimits for memory and processes"]

    async def _ray(self) -> Any:
        import ray

        async with self._connected:
            if self._host_class is None:
                if not ray.is_initialized():
                    # a future of its own: a caller cancelled mid-way leaves the connection to finish (close()
                    # waits for it a little, so as not to leave a half-made session on the cluster)
                    self._connecting = asyncio.ensure_future(_on_cluster(_connect, ray, self.url))
                    await asyncio.shield(self._connecting)
                from launch.stores.placement.ray_host import WorkerHost

                self._host_class = ray.remote(WorkerHost)
                self._monitor = asyncio.create_task(self._watch(), name="ray-placement-monitor")
        return ray

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        try:
            bundle = await self.objects.get(spec.bundle_key)
        except KeyError:
            raise WorkerStartError(f"the bundle's object {spec.bundle_key!r} is missing from the object store"
                                   ) from None
        ray = await self._ray()
        memory = parse_memory(spec.memory)
        await self._fits_somewhere(ray, spec, memory)
        options: dict[str, Any] = {"num_cpus": spec.cpus or 1, "num_gpus": spec.gpus,
                                   "name": f"launch-worker-{spec.worker_id}", "max_restarts": 0}
        if memory:
            options["memory"] = memory
        actor = self._host_class.options(**options).remote()
        self._starting[spec.worker_id] = actor  # watched only once it serves
        token = secrets.token_urlsafe(32)
        config = {"worker_id": spec.worker_id, "endpoint_id": spec.endpoint_id, "runtime": dict(spec.runtime),
                  "requirements": list(spec.requirements), "python_minor": spec.python_minor,
                  "sandbox": {**self.sandbox_options, "memory": spec.memory}}
        host_ref = actor.__ray_call__.remote(lambda _self: ray.util.get_node_ip_address())
        started = time.monotonic()
        try:
            host = await _on_cluster(ray.get, host_ref, timeout=spec.start_timeout)
            remaining = max(1.0, spec.start_timeout - (time.monotonic() - started))
            ref = actor.start.remote(config, bundle, token, host, remaining)
            ready = await _on_cluster(ray.get, ref, timeout=remaining + 5)
        except Exception as exc:
            self._starting.pop(spec.worker_id, None)
            await self._stop_actor(actor, grace=1.0)
            cause = getattr(exc, "cause", None) or exc  # Ray wraps what the actor raised
            message, _, tail = str(cause).partition("\n")
            if type(exc).__name__ == "GetTimeoutError":
                message = ("no Ray node had the worker's resources free in time "
                           f"(cpus={spec.cpus}, memory={spec.memory}, gpus={spec.gpus})")
            _append_log(spec.log_path, tail)  # the worker's log lives on its node: keep its end here
            raise WorkerStartError(message, tail) from None
        if "error" in ready:  # it could not start: its whole log comes here, where the endpoint's logs are
            self._starting.pop(spec.worker_id, None)
            await self._stop_actor(actor, grace=1.0)
            await asyncio.to_thread(_Log(spec.log_path).append, ready["log"])
            tail = "" if ready["deterministic"] else ready["log"][-4000:].decode("utf-8", "replace")
            raise WorkerStartError(ready["error"], tail, deterministic=ready["deterministic"])
        self._starting.pop(spec.worker_id, None)
        worker_log = self._logs[spec.worker_id] = _Log(spec.log_path)
        await asyncio.to_thread(worker_log.append, ready["log"])  # its start is in the endpoint's logs at once
        self._actors[spec.worker_id] = actor
        return WorkerHandle(spec.worker_id, f"{ready['address']}#{token}", timeline=ready["timeline"],
                            environment=ready["environment"], environment_seconds=ready["environment_seconds"])

    async def _fits_somewhere(self, ray: Any, spec: WorkerSpec, memory: int | None) -> None:
        """Fail at once, with the reason, for a worker no node of the cluster could ever hold (else Ray would
        keep it pending until the start timeout)."""
        nodes = [n.get("Resources", {}) for n in await _on_cluster(ray.nodes) if n.get("Alive")]
        needs = {"CPU": spec.cpus or 1, "GPU": spec.gpus, "memory": memory or 0}
        if not any(all(node.get(k, 0) >= v for k, v in needs.items() if v) for node in nodes):
            have = ", ".join(f"{int(n.get('CPU', 0))} CPUs/{int(n.get('GPU', 0))} GPUs/"
                             f"{int(n.get('memory', 0)) >> 20} MiB" for n in nodes) or "no live nodes"
            raise WorkerStartError(f"no node of the Ray cluster can hold this worker (cpus={spec.cpus}, "
                                   f"memory={spec.memory}, GPUs={spec.gpus}); the nodes have: {have}")

    async def _watch(self) -> None:
        """Notice workers (and nodes) that died, and copy what the workers logged: ``alive`` answers from what
        this loop saw."""
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            try:
                await _on_cluster(self._poll_all, dict(self._actors))
            except Exception:
                log.exception("watching the Ray workers failed; retrying")

    def _poll_all(self, actors: dict[str, Any]) -> None:
        """Ask every worker's actor at once whether it runs and what it logged (in a thread)."""
        import ray

        asked = {worker_id: (actor.poll.remote(self._logs[worker_id].offset), self._logs[worker_id])
                 for worker_id, actor in actors.items() if worker_id in self._logs}
        for worker_id, (ref, worker_log) in asked.items():
            alive: bool
            try:
                alive, data = ray.get(ref, timeout=10)
                worker_log.append(data)
            except Exception as exc:  # the actor or its node is gone
                alive = False
                self._remember(worker_id, f"its Ray actor failed: {type(exc).__name__}")
            if not alive and worker_id in self._actors:
                self._dead.add(worker_id)

    def _remember(self, worker_id: str, reason: str) -> None:
        self._reasons[worker_id] = reason
        while len(self._reasons) > 1000:
            self._reasons.popitem(last=False)

    async def stop(self, worker_id: str, grace: float) -> None:
        actor = self._actors.pop(worker_id, None) or self._starting.pop(worker_id, None)
        self._dead.discard(worker_id)
        if actor is not None:
            await self._stop_actor(actor, grace, self._logs.pop(worker_id, None))

    async def _stop_actor(self, actor: Any, grace: float, worker_log: _Log | None = None) -> None:
        """Stop the worker, keep the end of its log, and end its actor."""
        import ray

        with contextlib.suppress(Exception):
            offset = worker_log.offset if worker_log is not None else None
            rest: bytes = await _on_cluster(ray.get, actor.stop.remote(grace, offset), timeout=grace + 10)
            if worker_log is not None and rest:
                await asyncio.to_thread(worker_log.append, rest)
        with contextlib.suppress(Exception):
            ray.kill(actor)

    def alive(self, worker_id: str) -> bool:
        return worker_id in self._actors and worker_id not in self._dead

    def exit_reason(self, worker_id: str) -> str | None:
        return self._reasons.get(worker_id)

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await asyncio.gather(*(self.stop(w, grace=5.0) for w in [*self._actors, *self._starting]),
                             return_exceptions=True)
        if self._connecting is not None and not self._connecting.done():
            await asyncio.wait([self._connecting], timeout=CLOSE_WAIT_SECONDS)
        connecting = self._connecting
        if self._host_class is not None or (connecting is not None and connecting.done()
                                            and not connecting.cancelled() and connecting.exception() is None):
            import ray

            with contextlib.suppress(Exception):
                await asyncio.wait_for(_on_cluster(ray.shutdown), CLOSE_WAIT_SECONDS)


async def _on_cluster(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, a blocking call to the Ray cluster, in a daemon thread of its own: the
    gateway's shutdown never waits for a call the cluster holds up (a connection the head's client proxy is slow
    to accept, a ``ray.get`` waiting for a node), as it would for a thread of the loop's default executor."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if not outcome.done():
            if error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="ray-call", daemon=True).start()
    return await outcome


def _connect(ray: Any, url: str) -> None:
    """``ray.init`` through the Ray client, tried again a few times: the head's client proxy sometimes fails
    to start the session process it makes for each client ("Initialization failure from server")."""
    os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", RECONNECT_GRACE_SECONDS)
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            ray.init(address=url, namespace="launch", log_to_driver=False)
            return
        except ConnectionError as exc:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            log.warning("connecting to the Ray cluster at %s failed (%s); trying again", url,
                        str(exc).partition("\n")[0])
            with contextlib.suppress(Exception):
                ray.shutdown()
            time.sleep(1.0 + attempt)


class _Log:
    """A worker's log file on the gateway, and how much of the node's copy it holds."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def append(self, data: bytes) -> None:
        if not data:
            return
        self.offset += len(data)
        if self.path:
            with contextlib.suppress(OSError):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "ab") as handle:
                    handle.write(data)


def _append_log(path: str, text: str) -> None:
    if not path or not text:
        return
    with contextlib.suppress(OSError):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
