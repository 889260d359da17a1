"""The reconciler: for every endpoint, make the running workers match what its settings and load ask for.

It starts workers (building the bundle's environment first), rolls out new generations before stopping
old ones, drains and stops surplus workers, restarts crashed ones with backoff, marks endpoints READY or
UPDATE_FAILED with a readable reason, and tears deleted endpoints down (failing their unfinished tasks).
A generation that cannot start is rolled back (``domain.rollouts``): the serving one stays.

Its cost follows what changes, not what exists: each pass reads only the endpoints named in
``Endpoints.dirty`` (changed records, or woken by demand or a broken worker) and looks at those plus the
*live* ones (``is_live``: workers, starts, waiters, retries, a generation still to prove). An idle endpoint
costs nothing until something happens to it; comparing every record's ``updated_at`` every
``FULL_RESYNC_SECONDS`` is the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launch.server import cold_start
from launch.server.activity import Activity
from launch.server.control import autoscaler, capacity
from launch.server.control.directory import WorkerDirectory
from launch.server.control.dispatcher import Dispatcher
from launch.server.control.pool import EndpointPool, Pools, WorkerRef
from launch.server.control.workers import BundleUnavailable, WorkerFactory
from launch.server.domain.bundles import Bundles
from launch.server.domain.endpoint_states import EndpointStatus, Event
from launch.server.domain.endpoints import Endpoint, Endpoints
from launch.server.domain.rollouts import gives_up
from launch.server.domain.tasks import Tasks
from launch.server.environments import EnvironmentBuildError
from launch.server.metrics import Metrics
from launch.server.settings import Settings
from launch.server.worker_client import WorkerClient
from launch.stores.broker import Broker
from launch.stores.objects import ObjectStore
from launch.stores.placement import Placement, WorkerSpec, WorkerStartError, log_tail

log = logging.getLogger("launch.reconciler")
MAX_BACKOFF = 30.0
FULL_RESYNC_SECONDS = 30.0
BULK_READ = 50  # more changed endpoints than this are read with one query
LOAD_FAILED_MARKER = "bundle failed to load"  # what launch.worker.main prints before exiting with code 3
ROLLOUT_LOG = "rollouts.log"


def deterministic(exc: Exception) -> bool:
    """Failures that repeat identically on every attempt: retrying them only delays the answer."""
    if isinstance(exc, EnvironmentBuildError | BundleUnavailable):
        return True
    return isinstance(exc, WorkerStartError) and (exc.deterministic or LOAD_FAILED_MARKER in exc.log_tail)


@dataclass
class EndpointRuntime:
    """What the reconciler knows of one endpoint between passes."""

    endpoint: Endpoint
    pool: EndpointPool
    starting: dict[str, int] = field(default_factory=dict)  # worker id -> generation
    failures: int = 0
    retry_at: float = 0.0
    dispatcher: Dispatcher | None = None
    tearing_down: bool = False
    unplaced: str | None = None  # why its last worker did not fit on the host (shown as status_reason)
    desired: int | None = None  # the autoscaler's last answer


def is_live(rt: EndpointRuntime) -> bool:
    """Whether an endpoint needs a look at every pass although nothing about it was reported: it has
    workers (health, autoscaling, scale-down timers), starts under way, requests waiting, a restart
    backoff running, no room on the host yet, is being torn down, or has a generation still to prove (or
    must keep ``min_workers``)."""
    if rt.pool.workers or rt.starting or rt.pool.waiting or rt.tearing_down or rt.failures:
        return True
    if rt.unplaced is not None:  # waiting for room on the host
        return True
    endpoint = rt.endpoint
    if not endpoint.usable:
        return False
    return (endpoint.status is not EndpointStatus.READY or endpoint.needs_proof
            or endpoint.settings.min_workers > 0)


def proof_key(endpoint: Endpoint) -> tuple[object, ...]:
    """What a worker start proves loads: the bundle under the resources it ran with. An endpoint with
    ``min_workers=0`` whose key is proven is READY without starting a worker just to stop it again."""
    s = endpoint.settings
    return endpoint.bundle_id, s.cpus, s.memory, s.storage, s.gpus, s.gpu_type


class Reconciler:
    def __init__(self, settings: Settings, *, endpoints: Endpoints, bundles: Bundles, tasks: Tasks,
                 broker: Broker, objects: ObjectStore, placement: Placement, pools: Pools,
                 factory: WorkerFactory, client: WorkerClient, metrics: Metrics | None = None,
                 activity: Activity | None = None, directory: WorkerDirectory | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.activity = activity or Activity()
        self.endpoints = endpoints
        self.bundles = bundles
        self.tasks = tasks
        self.broker = broker
        self.objects = objects
        self.placement = placement
        self.pools = pools
        self.factory = factory
        self.client = client
        self.directory = directory  # publishes ready workers to the other gateways
        self.policy = autoscaler.Policy(scale_to_zero_after=settings.scale_to_zero_after_seconds)
        self.host = capacity.Host(cpus=settings.host_cpus, memory=capacity.parse_quantity(settings.host_memory),
                                  cpu_overcommit=settings.cpu_overcommit)
        self.ledger = capacity.Ledger()
        self.runtimes: dict[str, EndpointRuntime] = {}
        self.logs_root = settings.data_dir / "logs"
        self._jobs: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._next_resync = 0.0
        self.live: set[str] = set()  # ids of the live endpoints (is_live) after the last pass
        self.proven: set[tuple[object, ...]] = set()  # proof_key of every worker that started

    def log_dir(self, endpoint_id: str) -> Path:
        return self.logs_root / "endpoints" / endpoint_id

    def note(self, endpoint: Endpoint, event: str) -> None:
        """One line of the endpoint's rollout timeline (part of its creation logs, even when no worker ever
        started)."""
        path = self.log_dir(endpoint.id) / ROLLOUT_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with open(path, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(f"{stamp} generation {endpoint.generation} (bundle {endpoint.bundle_name}): {event}\n")

    def creation_logs(self, endpoint_id: str, limit: int = 64 * 1024) -> str:
        """Environment build output and worker logs of an endpoint, oldest first, at most ``limit`` bytes."""
        files = sorted(self.log_dir(endpoint_id).glob("*.log"), key=lambda p: p.stat().st_mtime)
        text = "".join(f"==> {p.name} <==\n{log_tail(str(p), limit)}\n" for p in files)
        return text[-limit:]

    def serving_pools(self, bundle_id: str) -> list[EndpointPool]:
        """The worker pools of READY endpoints that serve ``bundle_id`` (batch jobs borrow their spare
        capacity)."""
        return [rt.pool for rt in self.runtimes.values()
                if rt.endpoint.bundle_id == bundle_id and rt.endpoint.status is EndpointStatus.READY
                and not rt.tearing_down]

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        host = self.host
        log.info("workers are placed within %g cpus (LAUNCH_HOST_CPUS %g x LAUNCH_CPU_OVERCOMMIT %g) and %s of "
                 "memory (LAUNCH_HOST_MEMORY)", host.schedulable_cpus, host.cpus, host.cpu_overcommit,
                 capacity.format_bytes(host.memory))
        records = await self.endpoints.list()
        await self.tasks.recover({e.id for e in records if e.endpoint_type == "async"},
                                 drop_queues=[] if self.settings.single_gateway
                                 else [e.queue for e in records if e.endpoint_type == "async"])
        self._loop = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for job in list(self._jobs):
            job.cancel()
        # all at once: each gives its running tasks a few seconds to finish before handing them back
        await asyncio.gather(*(runtime.dispatcher.stop() for runtime in self.runtimes.values()
                               if runtime.dispatcher is not None))
        # the control loop may move to another gateway and back: stop this one's workers, keep placement open
        workers = [w for rt in self.runtimes.values() for w in rt.pool.workers]
        await asyncio.gather(*(self.placement.stop(w.worker_id, grace=5.0) for w in workers),
                             return_exceptions=True)
        for worker in workers:
            self.client.forget(worker.address)
        for runtime in self.runtimes.values():
            runtime.pool.workers = []
        self.runtimes.clear()
        self._loop = None

    async def _run(self) -> None:
        while True:
            try:
                if time.monotonic() >= self._next_resync:
                    await self.reconcile_all()
                else:
                    await self.reconcile_changed()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed")
            self.endpoints.changed.clear()
            if self.endpoints.dirty:  # reported during the pass
                continue
            # nothing live: sleep until something is reported (or the next full re-read)
            timeout = (self.settings.reconcile_interval_seconds if self.live
                       else max(0.0, self._next_resync - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.endpoints.changed.wait(), timeout)

    async def reconcile_all(self) -> None:
        """The safety net (at start-up, then every ``FULL_RESYNC_SECONDS``): compare every endpoint's
        ``updated_at`` with what the reconciler holds, read the ones that differ, and pass over them plus
        the dirty and live ones."""
        self._next_resync = time.monotonic() + FULL_RESYNC_SECONDS
        dirty = self.endpoints.take_dirty()
        stamps = await self.endpoints.stamps()
        for endpoint_id in list(self.runtimes):
            if endpoint_id not in stamps:
                await self._forget(endpoint_id)
        dirty |= {endpoint_id for endpoint_id, stamp in stamps.items()
                  if (rt := self.runtimes.get(endpoint_id)) is None or rt.endpoint.updated_at != stamp}
        await self._read(dirty)
        await self._pass(dirty)

    async def reconcile_changed(self) -> None:
        """Read the endpoints reported since the last pass, then a pass over them and the live ones."""
        dirty = self.endpoints.take_dirty()
        await self._read(dirty)
        await self._pass(dirty)

    async def _read(self, endpoint_ids: set[str]) -> None:
        """Bring the runtimes of these endpoints up to date with their records (forget deleted ones)."""
        if len(endpoint_ids) > BULK_READ:
            records = {e.id: e for e in await self.endpoints.list()}
            found: dict[str, Endpoint | None] = {i: records.get(i) for i in endpoint_ids}
        else:
            found = {i: await self.endpoints.get_by_id(i) for i in endpoint_ids}
        for endpoint_id, endpoint in found.items():
            if endpoint is None:
                await self._forget(endpoint_id)
            else:
                self._apply(endpoint)

    def _apply(self, endpoint: Endpoint) -> EndpointRuntime:
        runtime = self.runtimes.get(endpoint.id)
        if runtime is None:
            runtime = self.runtimes[endpoint.id] = EndpointRuntime(endpoint, self.pools.get(endpoint.id))
        if runtime.endpoint.generation != endpoint.generation:
            runtime.failures, runtime.retry_at = 0, 0.0
        runtime.endpoint = endpoint
        self.activity.saw_status(endpoint.id, endpoint.status.value, endpoint.status_reason)
        return runtime

    async def _pass(self, dirty: set[str]) -> None:
        for endpoint_id in sorted(dirty | self.live):
            runtime = self.runtimes.get(endpoint_id)
            if runtime is None:
                self.live.discard(endpoint_id)
                continue
            await self._reconcile(runtime)
            if is_live(runtime):
                self.live.add(endpoint_id)
            else:
                self.live.discard(endpoint_id)
                if runtime.dispatcher is not None:  # no worker to dispatch to: no loop to keep running
                    await runtime.dispatcher.stop()
                    runtime.dispatcher = None
        # the jobs this pass spawned take their first step (a start claims its place in rt.starting) before
        # the next pass counts them: passes can follow each other without any other await in between
        await asyncio.sleep(0)

    # -- one endpoint ----------------------------------------------------------------------------------
    async def _reconcile(self, rt: EndpointRuntime) -> None:
        endpoint = rt.endpoint
        if endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
            if not rt.tearing_down:  # drains can take a while: never hold up the other endpoints
                rt.tearing_down = True
                self._spawn(self._teardown(rt))
            return
        self._ensure_dispatcher(rt)
        await self._reap_dead(rt)
        if not endpoint.usable:  # nothing can serve it (a rolled-back endpoint still serves: it is usable)
            await self._fail_stranded_tasks(rt)
            return
        if endpoint.settings.gpus > 0 and not self.placement.gpus:
            reason = (f"this server has no GPUs; the endpoint asks for {endpoint.settings.gpus} "
                      f"{endpoint.settings.gpu_type or ''} GPU(s). Edit it with gpus=0 to run on CPU.")
            await self._fail(endpoint, reason)
            return
        current = [w for w in rt.pool.workers if w.generation == endpoint.generation and w.usable]
        for worker in current:
            worker.capacity = endpoint.settings.per_worker  # per_worker edits apply without a rollout
        starting = sum(1 for g in rt.starting.values() if g == endpoint.generation)
        desired = await self._desired(rt, len(current) + starting)
        if endpoint.needs_proof and not current and desired == 0:
            if proof_key(endpoint) in self.proven and not starting:  # this bundle already loaded here
                self.note(endpoint, "ready: its bundle already loaded on this server (no worker until traffic)")
                await self.endpoints.set_status(endpoint.id, Event.WORKER_READY, None, endpoint.generation)
                return
            desired = 1  # prove the new generation loads before it takes traffic (and before READY)
        rt.desired = desired
        if len(current) + starting < desired and time.monotonic() >= rt.retry_at:
            self.metrics.autoscaled(endpoint.id, "up", desired - len(current) - starting)
            for _ in range(desired - len(current) - starting):
                self._spawn(self._start_worker(rt, endpoint))
        elif len(current) > desired:
            self.metrics.autoscaled(endpoint.id, "down", len(current) - desired)
            surplus = sorted(current, key=lambda w: w.inflight)[: len(current) - desired]
            for worker in surplus:
                self._drain(rt, worker)
        if rt.unplaced is not None and len(current) + starting >= desired:  # the capacity reason is stale
            rt.unplaced = None
            await self.endpoints.set_status(endpoint.id, Event.WAITING, None, endpoint.generation)
        if len(current) >= desired or (desired == 0 and not starting):
            for worker in [w for w in rt.pool.workers if w.generation != endpoint.generation]:
                self._drain(rt, worker)

    async def _fail_stranded_tasks(self, rt: EndpointRuntime) -> None:
        """Queued tasks of a failed endpoint with no worker left would wait forever: end them with its reason."""
        endpoint = rt.endpoint
        if endpoint.endpoint_type != "async" or rt.pool.serving or not await self.broker.depth(endpoint.queue):
            return
        reason = f"endpoint {endpoint.name!r} failed to start: {endpoint.status_reason or 'unknown reason'}"
        await self.tasks.fail_endpoint_tasks(endpoint.id, reason, pending_only=True)
        await self.broker.drop(endpoint.queue)

    async def _desired(self, rt: EndpointRuntime, current: int) -> int:
        s = rt.endpoint.settings
        queued = await self.broker.depth(rt.endpoint.queue) if rt.endpoint.endpoint_type == "async" else 0
        load = autoscaler.Load(
            min_workers=s.min_workers, max_workers=s.max_workers, per_worker=s.per_worker,
            inflight=rt.pool.inflight, queued=queued, current=current,
            seconds_since_busy=time.monotonic() - rt.pool.last_busy,
        )
        if autoscaler.needed(load) >= current and load.inflight + queued > 0:
            rt.pool.last_busy = time.monotonic()
            load = autoscaler.Load(**{**load.__dict__, "seconds_since_busy": 0.0})
        return autoscaler.decide(load, self.policy)

    def _ensure_dispatcher(self, rt: EndpointRuntime) -> None:
        """A dispatcher runs while the endpoint has (or starts) workers; queued tasks wait in the broker."""
        if rt.endpoint.endpoint_type != "async" or rt.dispatcher is not None:
            return
        if not (rt.pool.workers or rt.starting):
            return
        endpoint_id = rt.endpoint.id
        rt.dispatcher = Dispatcher(
            endpoint_id, rt.endpoint.queue, rt.pool, broker=self.broker, tasks=self.tasks,
            objects=self.objects, client=self.client, task_timeout=self.settings.task_timeout_seconds,
            on_broken_worker=lambda: self.endpoints.wake(endpoint_id), fetch_policy=self.settings.fetch_policy(),
            exit_reason=self.placement.exit_reason, cancel_stops_worker=self.settings.task_cancel_stops_worker,
            metrics=self.metrics, activity=self.activity, owner=rt.endpoint.owner,
        )
        rt.dispatcher.start()

    async def _reap_dead(self, rt: EndpointRuntime) -> None:
        for worker in list(rt.pool.workers):
            if worker.draining or (not worker.broken and self.placement.alive(worker.worker_id)):
                continue
            if not worker.retiring:  # a worker that drained and exited on its own is no failure
                log.warning("worker %s of endpoint %s %s; it will be replaced", worker.worker_id,
                            rt.endpoint.name, "broke its connection" if worker.broken else "died")
                self._note_failure(rt)
            rt.pool.workers.remove(worker)
            self.ledger.release(worker.worker_id)
            self._withdraw(rt, worker)
            self._spawn(self.placement.stop(worker.worker_id, grace=1.0))
            self.client.forget(worker.address)
            await rt.pool.notify()

    async def _fail(self, endpoint: Endpoint, reason: str) -> None:
        """The endpoint's generation failed for good: roll back to the serving one, or fail the endpoint."""
        if await self.endpoints.fail_rollout(endpoint.id, endpoint.generation, reason):
            self.note(endpoint, f"failed: {reason.splitlines()[0] if reason else 'unknown reason'}")

    def _note_failure(self, rt: EndpointRuntime) -> None:
        rt.failures += 1
        rt.retry_at = time.monotonic() + min(MAX_BACKOFF, 0.5 * 2 ** (rt.failures - 1))

    # -- workers ---------------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _start_worker(self, rt: EndpointRuntime, endpoint: Endpoint) -> None:
        worker_id = uuid.uuid4().hex[:12]
        if not await self._place(rt, endpoint, worker_id):
            return
        rt.starting[worker_id] = endpoint.generation
        if endpoint.needs_proof and rt.failures == 0 and len(rt.starting) == 1:
            self.note(endpoint, "starting a worker")
        try:
            await self.endpoints.set_status(endpoint.id, Event.STARTING, None, endpoint.generation)
            spec = await self._worker_spec(endpoint, worker_id)
            handle = await self.placement.start(spec)
        except (WorkerStartError, EnvironmentBuildError, BundleUnavailable) as exc:
            self.ledger.release(worker_id)
            await self._start_failed(rt, endpoint, exc)
            return
        except BaseException as exc:
            self.ledger.release(worker_id)
            if not isinstance(exc, Exception):
                raise
            log.exception("starting a worker for endpoint %s failed", endpoint.id)
            await self._start_failed(rt, endpoint, exc)
            return
        finally:
            rt.starting.pop(worker_id, None)
        current = self.runtimes.get(endpoint.id)
        if current is not rt or rt.endpoint.status is EndpointStatus.DELETE_IN_PROGRESS:
            await self.placement.stop(handle.worker_id, grace=1.0)
            self.ledger.release(worker_id)
            return
        ref = WorkerRef(handle.worker_id, handle.address, endpoint.generation, capacity=endpoint.settings.per_worker)
        rt.pool.workers.append(ref)
        if self.directory is not None:
            try:
                await self.directory.publish(endpoint.id, ref)
            except Exception:  # the others' sync paths miss it until the next start; this gateway serves it
                log.exception("could not publish worker %s", ref.worker_id)
        rt.failures = 0
        self._record_start(endpoint, spec, handle.timeline, handle.environment, handle.environment_seconds)
        self.proven.add(proof_key(endpoint))
        await rt.pool.notify()
        if endpoint.needs_proof:
            self.note(endpoint, "ready: this generation serves now")
        await self.endpoints.set_status(endpoint.id, Event.WORKER_READY, None, endpoint.generation)
        self.endpoints.wake(endpoint.id)

    def _record_start(self, endpoint: Endpoint, spec: WorkerSpec, timeline: dict[str, float],
                      environment: str = "", environment_seconds: float = 0.0) -> None:
        """The worker's cold-start timeline: into the metrics, the dashboard and the creation logs (the
        environment as placement reports it when it built it, else as the spec says)."""
        start = cold_start.record(spec.worker_id, endpoint.generation, timeline, environment or spec.environment,
                                  environment_seconds if environment else spec.environment_seconds)
        self.metrics.worker_started(endpoint.id, ok=True)
        self.metrics.cold_start_phases(endpoint.id, start["phases"])
        self.activity.started(endpoint.id, start)
        path = self.log_dir(endpoint.id) / "cold-start.log"
        line = cold_start.describe(start) + "\n"
        self._spawn(asyncio.to_thread(_append, path, line))

    async def _place(self, rt: EndpointRuntime, endpoint: Endpoint, worker_id: str) -> bool:
        """Reserve the host capacity a new worker needs (before any await: the decision and the reservation
        are one step); if it does not fit, say why in the endpoint's status_reason and leave it pending."""
        want = capacity.worker_resources(endpoint.settings.cpus, endpoint.settings.memory)
        reason = capacity.unfit_reason(self.host, self.ledger.used, want)
        if reason is None:
            self.ledger.reserve(worker_id, want)
            return True
        if rt.unplaced != reason:  # write the reason once, not on every pass
            rt.unplaced = reason
            log.warning("endpoint %s: waiting for host capacity: %s", endpoint.name, reason)
            await self.endpoints.set_status(endpoint.id, Event.WAITING, f"waiting for host capacity: {reason}",
                                            endpoint.generation)
        return False

    async def _start_failed(self, rt: EndpointRuntime, endpoint: Endpoint, exc: Exception) -> None:
        self.metrics.worker_started(endpoint.id, ok=False)
        self._note_failure(rt)
        tail = getattr(exc, "log_tail", "")
        reason = f"{exc}\n{tail}".strip()
        self.activity.failed(endpoint.owner, endpoint.id, "worker start", "", reason)
        log.warning("endpoint %s: worker failed to start (%d/%d): %s", endpoint.name, rt.failures,
                    self.settings.worker_restart_limit, str(exc))
        if gives_up(deterministic(exc), rt.failures, self.settings.worker_restart_limit):
            await self._fail(endpoint, reason)

    async def _worker_spec(self, endpoint: Endpoint, worker_id: str) -> WorkerSpec:
        bundle = await self.bundles.get_by_id(endpoint.bundle_id)
        return await self.factory.spec(bundle, owner_id=endpoint.id, worker_id=worker_id,
                                       generation=endpoint.generation, threads=endpoint.settings.per_worker,
                                       log_dir=self.log_dir(endpoint.id), cpus=endpoint.settings.cpus,
                                       memory=endpoint.settings.memory, gpus=endpoint.settings.gpus)

    def _drain(self, rt: EndpointRuntime, worker: WorkerRef) -> None:
        if worker.draining:
            return
        worker.draining = True
        self._spawn(self._stop_worker(rt, worker))

    def _withdraw(self, rt: EndpointRuntime, worker: WorkerRef) -> None:
        """Tell the other gateways to stop sending to ``worker``."""
        if self.directory is not None:
            self._spawn(self.directory.withdraw(rt.endpoint.id, worker.worker_id))

    async def _stop_worker(self, rt: EndpointRuntime, worker: WorkerRef) -> None:
        self._withdraw(rt, worker)
        deadline = time.monotonic() + self.settings.worker_drain_seconds
        while worker.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.placement.stop(worker.worker_id, grace=self.settings.worker_drain_seconds)
        self.ledger.release(worker.worker_id)
        self.client.forget(worker.address)
        if worker in rt.pool.workers:
            rt.pool.workers.remove(worker)
        await rt.pool.notify()

    async def _teardown(self, rt: EndpointRuntime) -> None:
        endpoint = rt.endpoint
        if rt.dispatcher is not None:
            await rt.dispatcher.stop()
            rt.dispatcher = None
        for worker in list(rt.pool.workers):
            worker.draining = True
        await asyncio.gather(*(self._stop_worker(rt, w) for w in list(rt.pool.workers)))
        await self.tasks.fail_endpoint_tasks(endpoint.id, f"endpoint {endpoint.name!r} was deleted")
        await self.broker.drop(endpoint.queue)
        await self.endpoints.remove(endpoint.id)
        await self._forget(endpoint.id)

    async def _forget(self, endpoint_id: str) -> None:
        self.activity.forget(endpoint_id)
        rt = self.runtimes.pop(endpoint_id, None)
        if rt is not None and rt.dispatcher is not None:
            await rt.dispatcher.stop()
        self.pools.drop(endpoint_id)


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(text)
