"""Composition root: builds the stores, services, control loops and the ASGI app from one Settings."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import inspect
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from launch.server.activity import Activity
from launch.server.api.errors import install_error_handlers
from launch.server.api.fast_path import FastPath
from launch.server.api.http_guard import guarded_protocol
from launch.server.api.limits import BodySizeLimit
from launch.server.api.openapi import install_docs
from launch.server.control.batch_runner import BatchRunner
from launch.server.control.callbacks import CallbackDelivery
from launch.server.control.directory import WorkerDirectory
from launch.server.control.leadership import Leadership
from launch.server.control.pool import Pools
from launch.server.control.reconciler import Reconciler
from launch.server.control.task_sweeper import TaskSweeper
from launch.server.control.workers import WorkerFactory
from launch.server.domain.batch_jobs import BatchJobs
from launch.server.domain.bundles import Bundles
from launch.server.domain.endpoint_cache import EndpointCache
from launch.server.domain.endpoints import Endpoints
from launch.server.domain.owners import ApiKeys
from launch.server.domain.quotas import Quotas
from launch.server.domain.tasks import TaskCache, Tasks
from launch.server.domain.uploads import Uploads
from launch.server.environments import Environments
from launch.server.logs import AccessLog
from launch.server.metrics import Metrics, registry_for
from launch.server.predictions import Predictions, ResultLinks
from launch.server.settings import Settings
from launch.server.status import PlatformStatus
from launch.server.streams import Streams
from launch.server.worker_client import WorkerClient
from launch.stores import changes as topics
from launch.stores.broker import Broker, open_broker
from launch.stores.changes import Changes, open_changes
from launch.stores.database import Database, migrate
from launch.stores.objects import ObjectStore, open_object_store
from launch.stores.placement import Placement, open_placement
from launch.stores.placement.local import LocalOptions

log = logging.getLogger("launch.server")


@dataclass
class Services:
    settings: Settings
    secret: bytes
    api_keys: ApiKeys
    bundles: Bundles
    endpoints: Endpoints
    cache: EndpointCache
    tasks: Tasks
    uploads: Uploads
    predictions: Predictions
    streams: Streams
    pools: Pools
    objects: ObjectStore
    broker: Broker
    reconciler: Reconciler
    links: ResultLinks
    batch_jobs: BatchJobs
    batch_runner: BatchRunner
    data_dir_lock: IO[bytes] | None
    task_sweeper: TaskSweeper
    callbacks: CallbackDelivery
    metrics: Metrics
    activity: Activity
    status: PlatformStatus
    access_log: AccessLog | None
    scale_out: ScaleOut
    placement: Placement


class DataDirInUse(Exception):
    """Another server already runs on this data directory."""


def lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data directory for the life of the process: with the embedded broker
    and SQLite, a second server on the same directory would dispatch the same tasks behind the first's back."""
    handle = open(data_dir / "server.lock", "ab")  # noqa: SIM115 - held open until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(f"another launch server is already running on {data_dir}") from None
    return handle


class ScaleOut:
    """What lets several gateways share one database and broker: change notifications between them, the
    control-loop lease, and the published ready workers (README: "Scale out")."""

    def __init__(self, settings: Settings, db: Database, changes: Changes, pools: Pools) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.changes = changes
        self.directory = None if settings.single_gateway else WorkerDirectory(db, pools, changes, self.holder)
        self.pools = pools
        self.control: list[Any] = []  # the control loop's parts (started when elected, in this order)
        self.closing = False
        self.leadership = Leadership(db, self.holder, settings.control_lease_seconds, on_elected=self._elected,
                                     on_deposed=self._deposed, always=settings.single_gateway)
        self._demand_sent: dict[str, float] = {}

    async def _elected(self) -> None:
        if self.directory is not None:
            await self.directory.take_over()
        for part in self.control:
            started = part.start()
            if inspect.isawaitable(started):
                await started

    async def _deposed(self) -> None:
        for part in reversed(self.control):
            await part.stop()
        if self.directory is not None:
            await self.directory.hand_over()
            if self.closing:
                await self.directory.close()

    def demand(self, endpoint_id: str) -> None:
        """A request waits for a worker of ``endpoint_id``: tell the control loop, here or elsewhere (at most
        twice a second per endpoint)."""
        if self.leadership.leading:
            return
        now = time.monotonic()
        if now - self._demand_sent.get(endpoint_id, 0.0) > 0.5:
            self._demand_sent[endpoint_id] = now
            self.changes.publish(topics.DEMAND, endpoint_id)

    def demanded_elsewhere(self, endpoint_id: str) -> None:
        if self.leadership.leading:
            self.pools.get(endpoint_id).remote_demand_until = time.monotonic() + 3.0

    async def start(self) -> None:
        await self.changes.start()
        await self.leadership.start()
        if self.directory is not None and not self.leadership.leading:
            self.directory.start_mirroring()

    async def stop(self) -> None:
        self.closing = True
        await self.leadership.stop()
        if self.directory is not None:
            await self.directory.close()
        await self.changes.close()


def wire_notifications(services: Services) -> None:
    """Changes made here are told to the other gateways; changes told by them drop what is cached here."""
    changes, scale_out = services.scale_out.changes, services.scale_out
    services.endpoints.announce = lambda endpoint_id: changes.publish(topics.ENDPOINTS, endpoint_id)
    services.tasks.announce = lambda task_id: changes.publish(topics.TASKS, task_id)
    services.batch_jobs.listeners.append(lambda job_id: changes.publish(topics.BATCH_JOBS, job_id))
    changes.subscribe(topics.KEYS, lambda _key: services.api_keys.forget())
    changes.subscribe(topics.ENDPOINTS, services.endpoints.changed_elsewhere)
    changes.subscribe(topics.TASKS, services.tasks.ended_elsewhere)
    changes.subscribe(topics.BATCH_JOBS, lambda _job_id: services.batch_runner.wakeup.set())
    changes.subscribe(topics.DEMAND, scale_out.demanded_elsewhere)
    changes.subscribe(topics.DEMAND, services.endpoints.wake)
    local_demand = services.predictions.demand

    def demand(endpoint_id: str) -> None:
        local_demand(endpoint_id)
        scale_out.demand(endpoint_id)

    services.predictions.demand = demand


FULL_COLLECTION_EVERY = 100  # generation-1 collections between two full ones (CPython: 10)


def build_services(settings: Settings) -> Services:
    # The database writer thread and the event loop hand the GIL to each other on every write: the default
    # 5 ms switch interval would add up to 5 ms to each hand-over.
    sys.setswitchinterval(0.0002)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(settings.data_dir) if settings.single_gateway else None
    secret = settings.secret_key()
    database_url = settings.resolved_database_url
    migrate(database_url)
    db = Database(database_url)
    objects = open_object_store(settings.resolved_objects_url)
    broker = open_broker(settings.broker_url)
    pools = Pools()
    client = WorkerClient(max_frame_bytes=settings.max_result_bytes + 64 * 1024)
    environments = Environments(settings.data_dir / "envs", settings.build_environments)
    bundles = Bundles(db, objects, check_requirements=environments.check,
                      python_problem=environments.python_problem)
    quotas = Quotas.from_settings(settings)
    # with the embedded broker this process alone writes endpoints: it can hold all of them in memory
    endpoints = Endpoints(db, bundles, quotas, view=settings.broker_url.startswith("embedded:"))
    # with the embedded broker this process alone dispatches its tasks, so it knows their state first-hand
    task_cache = TaskCache(authoritative=settings.single_gateway)
    tasks = Tasks(db, broker, settings.task_max_attempts, settings.task_lease_seconds, task_cache,
                  retention=settings.task_retention_seconds, objects=objects)
    links = ResultLinks(settings.resolved_public_url, secret, settings.result_url_ttl_seconds)
    callback_policy = dataclasses.replace(settings.fetch_policy(), timeout=settings.callback_timeout_seconds)
    callbacks = CallbackDelivery(
        tasks, secret=secret, result_url=links.url, policy=callback_policy,
        max_attempts=settings.callback_max_attempts, retry_base=settings.callback_retry_base_seconds,
        timeout=settings.callback_timeout_seconds, ca_file=settings.callback_ca_file,
    )
    tasks.seal_callback = callbacks.sealer.seal_callback  # callback credentials are stored sealed
    endpoints.seal_extra = callbacks.sealer.seal_endpoint_extra
    cache = EndpointCache(endpoints)
    metrics, activity = Metrics(), Activity()
    placement = open_placement(settings.placement_url, objects, LocalOptions(
        hidden=settings.data_dir, sandbox=settings.sandbox, network=settings.sandbox_network,
        uid_base=settings.sandbox_uid_base, uid_count=settings.sandbox_uid_count,
        pids_limit=settings.worker_pids_limit, bundle_cache=settings.data_dir / "bundle-cache",
    ))
    factory = WorkerFactory(settings, environments, metrics, remote_environments=placement.builds_environments)
    scale_out = ScaleOut(settings, db, open_changes(settings.broker_url), pools)
    for line in placement.describe():
        log.info("workers: %s", line)
    reconciler = Reconciler(
        settings, endpoints=endpoints, bundles=bundles, tasks=tasks, broker=broker, objects=objects,
        placement=placement, pools=pools, factory=factory, client=client, metrics=metrics, activity=activity,
        directory=scale_out.directory,
    )
    target = settings.access_log_target
    access_log = AccessLog(target, as_json=settings.log_format == "json") if target else None
    batch_jobs = BatchJobs(db, bundles, objects, links.url)
    batch_runner = BatchRunner(batch_jobs, bundles, factory, placement, client, objects, settings.data_dir / "logs",
                               fetch_policy=settings.fetch_policy(), warm_pools=reconciler.serving_pools)
    task_sweeper = TaskSweeper(tasks, objects=objects, result_ttl=settings.result_url_ttl_seconds,
                               batch_jobs=batch_jobs)
    # the control loop's parts, started on the elected gateway in this order (callbacks first: they hear the
    # endings that recovery and the dispatchers make)
    scale_out.control = [callbacks, reconciler, task_sweeper, batch_runner]
    services = Services(
        settings=settings, secret=secret, bundles=bundles,
        api_keys=ApiKeys(db, secret, recheck_seconds=settings.api_key_recheck_seconds,
                         last_used_seconds=settings.api_key_last_used_seconds),
        endpoints=endpoints, cache=cache, tasks=tasks,
        uploads=Uploads(objects, secret, settings.resolved_public_url, settings.upload_url_ttl_seconds,
                        settings.max_bundle_bytes),
        predictions=Predictions(cache=cache, endpoints=endpoints, pools=pools, client=client, tasks=tasks,
                                objects=objects, links=links, sync_timeout=settings.sync_timeout_seconds,
                                max_queued=settings.max_queued_tasks, fetch_policy=settings.fetch_policy(),
                                exit_reason=placement.exit_reason, quotas=quotas, callback_policy=callback_policy),
        streams=Streams(cache=cache, endpoints=endpoints, pools=pools, client=client,
                        item_timeout=settings.sync_timeout_seconds, fetch_policy=settings.fetch_policy()),
        pools=pools, objects=objects, broker=broker, reconciler=reconciler, links=links,
        batch_jobs=batch_jobs, batch_runner=batch_runner, data_dir_lock=lock,
        task_sweeper=task_sweeper, callbacks=callbacks, metrics=metrics, activity=activity,
        status=PlatformStatus(db=db, endpoints=endpoints, reconciler=reconciler, broker=broker, client=client,
                              metrics=metrics, activity=activity),
        access_log=access_log, scale_out=scale_out, placement=placement,
    )
    services.predictions.open_extra = callbacks.sealer.open_endpoint_extra
    wire_notifications(services)
    return services


def build_app(settings: Settings) -> FastPath:
    from launch.server.api import dashboard, legacy, native, observability
    from launch.server.api.prediction_routes import ROUTES

    services = build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if services.access_log is not None:
            services.access_log.start()
        await services.api_keys.start()
        await services.scale_out.start()  # the control loop starts here if this gateway is elected
        # start-up objects (framework, models, metadata) leave the collector's working set: full collections
        # stay short, which keeps their pauses out of the request path's tail latency
        gc.freeze()
        # a full collection also walks the big containers (task cache, queues, indexes: ~100,000 entries each
        # under a backlog), 5-13 ms each; at the default it ran every ~0.4 s during a burst of submissions
        gc.set_threshold(700, 10, FULL_COLLECTION_EVERY)
        log.info("Launch is ready on %s (data in %s; %s)", settings.resolved_public_url, settings.data_dir,
                 "runs the control loop" if services.scale_out.leadership.leading else "control loop elsewhere")
        try:
            yield
        finally:
            await services.scale_out.stop()
            await services.placement.close()
            await services.api_keys.stop()
            await services.predictions.client.close()
            await services.broker.close()
            await services.tasks.db.close()
            if services.access_log is not None:
                await services.access_log.stop()

    app = FastAPI(title="Launch", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Self-hosted model serving: bundles, sync, async and streaming endpoints, tasks.")
    app.state.services = services
    app.state.metrics_registry = registry_for(services.metrics, lambda: services.status.snapshot)
    install_error_handlers(app)
    install_docs(app)
    fast_path = FastPath(app, services, ROUTES, settings.max_request_bytes)
    app.include_router(native.router)
    app.include_router(observability.router)
    app.include_router(dashboard.router)
    fast_path.document(app)  # the prediction routes, before the legacy API's catch-all
    app.include_router(legacy.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes,
                       own_limits={"/v1/uploads/": settings.max_bundle_bytes})
    return fast_path


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a graceful shutdown on SIGTERM/SIGINT exits 0 (uvicorn re-raises)


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run the platform until SIGTERM/SIGINT, then drain requests, stop workers and exit 0."""
    http = guarded_protocol(settings.max_header_bytes, settings.header_timeout_seconds)
    config = uvicorn.Config(build_app(settings), host=settings.host, port=settings.port, loop="uvloop",
                            http=http, log_level=log_level, access_log=False, timeout_graceful_shutdown=30,
                            backlog=4096, proxy_headers=False, server_header=False,
                            # JSON logs: uvicorn's own lines go through the root logger's JSON formatter too
                            log_config=None if settings.log_format == "json" else LOGGING_CONFIG)
    _Server(config).run()
