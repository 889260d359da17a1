"""Model endpoints: a bundle served by autoscaled workers, sync, async or streaming, owned by one user."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from launch.server.domain.bundles import Bundles
from launch.server.domain.endpoint_states import EndpointStatus, Event, IllegalTransition, transition
from launch.server.domain.errors import AlreadyExists, Conflict, InvalidRequest, NotFound
from launch.server.domain.names import validate_name
from launch.server.domain.quotas import OwnerUsage, Quotas
from launch.server.domain.rollouts import ROLLOUT_FIELDS, FailedRollout, Record, next_generation, on_failure, on_ready
from launch.server.domain.rollouts import usable as rollout_usable
from launch.stores.database import Database
from launch.stores.schema import bundles, endpoints

__all__ = ["ROLLOUT_FIELDS", "Endpoint", "EndpointSettings", "Endpoints"]
ENDPOINT_TYPES = ("sync", "async", "streaming")
_ID = re.compile(r"[0-9a-f]{32}")
_QUANTITY = re.compile(r"^\d{1,12}(\.\d{1,6})?([KMGTPE]i?|[kmgtpe])?$")
# Sanity bounds (one machine, or one cluster): anything past them is a typo, and would overflow somewhere.
MAX_CPUS = 1024
MAX_GPUS = 64
MAX_WORKERS = 2**31 - 1  # a sanity bound (a database integer); the operator caps come from quotas
MAX_PER_WORKER = 10_000


@dataclass(frozen=True)
class EndpointSettings:
    cpus: float = 3
    memory: str = "8Gi"
    storage: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    min_workers: int = 1
    max_workers: int = 1
    per_worker: int = 10
    post_inference_hooks: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> EndpointSettings:
        """Raise ``InvalidRequest`` with a readable reason for impossible settings."""
        if (not isinstance(self.cpus, int | float) or isinstance(self.cpus, bool) or not math.isfinite(self.cpus)
                or not 0 < self.cpus <= MAX_CPUS):
            raise InvalidRequest(f"cpus must be a number greater than 0 and at most {MAX_CPUS}")
        for name in ("memory", "storage"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _QUANTITY.fullmatch(value)):
                raise InvalidRequest(f"{name} must be a quantity such as '512Mi' or '8Gi', got {value!r}")
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or not 0 <= self.gpus <= MAX_GPUS:
            raise InvalidRequest(f"gpus must be an integer from 0 to {MAX_GPUS}")
        if self.gpu_type is not None and (not isinstance(self.gpu_type, str) or len(self.gpu_type) > 64):
            raise InvalidRequest("gpu_type must be a short string")
        if self.gpus > 0 and not self.gpu_type:
            raise InvalidRequest("gpu_type is required when gpus > 0")
        for name in ("min_workers", "max_workers", "per_worker"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise InvalidRequest(f"{name} must be an integer")
        if self.min_workers < 0:
            raise InvalidRequest("min_workers must be >= 0")
        if self.max_workers < max(1, self.min_workers):
            raise InvalidRequest("max_workers must be >= 1 and >= min_workers")
        if self.per_worker < 1:
            raise InvalidRequest("per_worker must be >= 1")
        if self.max_workers > MAX_WORKERS:
            raise InvalidRequest(f"max_workers must be at most {MAX_WORKERS}")
        if self.per_worker > MAX_PER_WORKER:
            raise InvalidRequest(f"per_worker must be at most {MAX_PER_WORKER}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**data, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner: str
    name: str
    endpoint_type: str
    bundle_id: str
    bundle_name: str
    settings: EndpointSettings
    metadata: dict[str, Any]
    labels: dict[str, str]
    status: EndpointStatus
    status_reason: str | None
    generation: int
    created_at: float
    updated_at: float
    serving_generation: int | None = None
    serving_bundle_name: str | None = None
    failed_rollout: FailedRollout | None = None
    request_schema: dict[str, Any] | None = None  # the bundle's, applied to requests at the gateway
    response_schema: dict[str, Any] | None = None

    @property
    def queue(self) -> str:
        return queue_name(self.id)

    @property
    def usable(self) -> bool:
        """Whether it takes requests: a failed rollout leaves the generation that serves in place."""
        return rollout_usable(self.status is EndpointStatus.UPDATE_FAILED, self.generation, self.failed_rollout)

    @property
    def needs_proof(self) -> bool:
        """Its generation never served yet: one worker must start, even without traffic."""
        return self.serving_generation != self.generation


def queue_name(endpoint_id: str) -> str:
    """The broker queue of an async endpoint's tasks."""
    return f"endpoint.{endpoint_id}"


def _public(settings: EndpointSettings) -> bool:
    """Launch's ``public_inference``: every owner may send tasks to the endpoint (by its id)."""
    return settings.extra.get("public_inference") is True


def _row_to_endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id, owner=row.owner, name=row.name, endpoint_type=row.endpoint_type, bundle_id=row.bundle_id,
        bundle_name=row.bundle_name, settings=EndpointSettings.from_dict(row.settings),
        metadata=row.metadata or {}, labels=row.labels or {}, status=EndpointStatus(row.status),
        status_reason=row.status_reason, generation=row.generation, created_at=row.created_at,
        updated_at=row.updated_at, serving_generation=row.serving_generation,
        serving_bundle_name=row.serving_bundle_name, failed_rollout=FailedRollout.from_dict(row.failed_rollout),
        request_schema=row.request_schema, response_schema=row.response_schema,
    )


def _record(row: Any) -> Record:
    return Record(
        generation=row.generation, bundle_id=row.bundle_id, bundle_name=row.bundle_name, settings=row.settings,
        serving_generation=row.serving_generation, serving_bundle_id=row.serving_bundle_id,
        serving_bundle_name=row.serving_bundle_name, serving_settings=row.serving_settings,
        failed_rollout=FailedRollout.from_dict(row.failed_rollout),
    )


def _select() -> sa.Select[Any]:
    # the schemas of the bundle it is asked to serve (the gateway checks requests against them)
    return sa.select(endpoints, bundles.c.request_schema, bundles.c.response_schema).outerjoin(
        bundles, bundles.c.id == endpoints.c.bundle_id)


def _require_bundle(conn: sa.Connection, bundle_id: str, bundle_name: str) -> None:
    """In the write's own transaction: the bundle was not deleted since it was read (nothing half-saved)."""
    if conn.execute(sa.select(bundles.c.id).where(bundles.c.id == bundle_id)).first() is None:
        raise NotFound(f"no bundle named {bundle_name!r}")


def _written(conn: sa.Connection, statement: Any) -> Endpoint:
    """Run an insert or update of one endpoint; the record as written, read in the same transaction (the
    in-memory view takes it as is, without another round trip)."""
    endpoint_id = conn.execute(statement.returning(endpoints.c.id)).scalar_one()
    return _row_to_endpoint(conn.execute(_select().where(endpoints.c.id == endpoint_id)).one())


def _settings_columns(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings JSON and ``max_workers``, the column the quota sum reads: every write of one writes both."""
    return {"settings": settings, "max_workers": int(settings.get("max_workers", EndpointSettings.max_workers))}


def _owner_usage(conn: sa.Connection, owner: str, except_id: str | None = None) -> OwnerUsage:
    """How many live endpoints (not being deleted) ``owner`` has and their ``max_workers`` summed, counted by
    the database in one row: a create or edit costs the same with 1,000 endpoints as with one."""
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(endpoints.c.max_workers), 0)).where(
        endpoints.c.owner == owner, endpoints.c.status != EndpointStatus.DELETE_IN_PROGRESS.value)
    if except_id is not None:
        query = query.where(endpoints.c.id != except_id)
    count, total = conn.execute(query).one()
    return OwnerUsage(endpoints=int(count), max_workers=int(total))


class Endpoints:
    """Endpoint records. Every change wakes the reconciler through ``changed`` and names the endpoint in
    ``dirty``, so the reconciler looks at that endpoint only.

    With ``view=True`` (this process alone writes endpoints: the embedded broker) every endpoint is also
    held in memory, loaded once and updated after each committed change, so listing 1,000 endpoints costs no
    query and no decoding of 3,000 JSON columns. Every write of a record ends with ``_committed``.
    """

    def __init__(self, db: Database, bundles_service: Bundles, quotas: Quotas | None = None,
                 view: bool = False) -> None:
        self.db = db
        self.bundles = bundles_service
        self.quotas = quotas or Quotas()
        self.changed = asyncio.Event()
        self.dirty: set[str] = set()
        self.listeners: list[Any] = []
        # extra settings as stored: default_callback_auth's secrets sealed (``sealing.Sealer``)
        self.seal_extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda extra: extra
        self._use_view = view
        self._view: dict[str, Endpoint] | None = None  # every endpoint by id, once loaded
        self._names: dict[tuple[str, str], str] = {}  # (owner, name) -> id of the endpoints in the view
        self._versions: dict[str, int] = {}  # changes per endpoint id, so an older read never wins
        self.announce: Callable[[str], None] = lambda endpoint_id: None  # tells the other gateways

    async def _load_view(self) -> dict[str, Endpoint]:
        while self._view is None:
            before = dict(self._versions)
            async with self.db.connect() as conn:
                rows = await conn.execute(_select())
                loaded = {e.id: e for e in map(_row_to_endpoint, rows)}
            if self._versions == before:  # nothing changed meanwhile: the load is current
                self._view = loaded
                self._names = {(e.owner, e.name): e.id for e in loaded.values()}
        return self._view

    async def _refresh(self, endpoint_id: str, known: Endpoint | None = None) -> None:
        """Bring the in-memory view of one endpoint up to date after a committed change."""
        if self._view is None:
            return
        while True:
            version = self._versions.get(endpoint_id, 0)
            endpoint = known if known is not None else await self._read_by_id(endpoint_id)
            known = None
            if self._view is None:
                return
            if self._versions.get(endpoint_id, 0) == version:
                if endpoint is None:
                    gone = self._view.pop(endpoint_id, None)
                    if gone is not None:
                        self._names.pop((gone.owner, gone.name), None)
                else:
                    self._view[endpoint_id] = endpoint
                    self._names[(endpoint.owner, endpoint.name)] = endpoint_id
                return

    def wake(self, endpoint_id: str) -> None:
        """Ask the reconciler to look at one endpoint now (demand from zero workers, a broken worker, ...);
        its record did not change."""
        self.dirty.add(endpoint_id)
        self.changed.set()

    def take_dirty(self) -> set[str]:
        """The endpoints changed or woken since the last call."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    async def _committed(self, endpoint_id: str, known: Endpoint | None = None) -> None:
        """After every committed write of an endpoint record: update the in-memory view (from ``known``, or
        by reading the record), then tell the reconciler and the caches (which read the view)."""
        self._versions[endpoint_id] = self._versions.get(endpoint_id, 0) + 1
        try:
            await self._refresh(endpoint_id, known)
        except BaseException:
            self._view = None  # unsure of it now: reloaded from the database when next needed
            raise
        finally:
            self._tell(endpoint_id)
            self.announce(endpoint_id)

    def changed_elsewhere(self, endpoint_id: str) -> None:
        """Another gateway changed ``endpoint_id`` (``*``: any may have): drop what is cached here, wake the
        control loop."""
        if endpoint_id == "*":
            self._view = None
            self.changed.set()
            for listener in self.listeners:
                listener("*")
            return
        self._view = None  # reloaded when next needed (only a lone gateway keeps a view)
        self._notify(endpoint_id)

    def _notify(self, endpoint_id: str) -> None:
        self._versions[endpoint_id] = self._versions.get(endpoint_id, 0) + 1
        self._tell(endpoint_id)

    def _tell(self, endpoint_id: str) -> None:
        self.wake(endpoint_id)
        for listener in self.listeners:
            listener(endpoint_id)

    async def create(
        self, owner: str, name: str, bundle_name: str, endpoint_type: str, settings: EndpointSettings,
        metadata: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
    ) -> Endpoint:
        validate_name("endpoint", name)
        if endpoint_type not in ENDPOINT_TYPES:
            raise InvalidRequest("endpoint_type must be 'sync', 'async' or 'streaming'")
        settings = replace(settings, extra=self.seal_extra(settings.extra)).validate()
        bundle = await self.bundles.get(owner, bundle_name)
        now = time.time()
        endpoint = Endpoint(
            id=uuid.uuid4().hex, owner=owner, name=name, endpoint_type=endpoint_type, bundle_id=bundle.id,
            bundle_name=bundle.name, settings=settings, metadata=dict(metadata or {}),
            labels=dict(labels or {}), status=EndpointStatus.UPDATE_PENDING, status_reason=None, generation=1,
            created_at=now, updated_at=now,
        )
        statement = endpoints.insert().values(
            id=endpoint.id, owner=owner, name=name, endpoint_type=endpoint_type, bundle_id=bundle.id,
            bundle_name=bundle.name, **_settings_columns(settings.to_dict()), metadata=endpoint.metadata,
            labels=endpoint.labels, status=endpoint.status.value, status_reason=None, generation=1,
            created_at=now, updated_at=now,
        )

        def insert(conn: sa.Connection) -> Endpoint:
            _require_bundle(conn, bundle.id, bundle.name)
            # checked in the write itself: the single writer makes count-then-insert atomic
            self.quotas.check_endpoint(settings, _owner_usage(conn, owner))
            return _written(conn, statement)

        try:
            written = await self.db.write(insert)
        except IntegrityError:
            raise AlreadyExists(f"an endpoint named {name!r} already exists") from None
        await self._committed(endpoint.id, written)
        return endpoint

    async def get(self, owner: str, name: str, for_inference: bool = False) -> Endpoint:
        """One of ``owner``'s endpoints by name, or by id (as Launch's v1 API addresses them); ``for_inference``
        also finds another owner's ``public_inference`` endpoint by id (to send it tasks, nothing else)."""
        if self._view is not None:
            found = self._view.get(self._names.get((owner, name), name))
            if found is not None and found.owner != owner and found.id == name and for_inference \
                    and _public(found.settings):
                return found
            if found is None or found.owner != owner or (found.name != name and found.id != name):
                raise NotFound(f"no endpoint named {name!r}")
            return found
        async with self.db.connect() as conn:
            row = (
                await conn.execute(_select().where(endpoints.c.owner == owner, endpoints.c.name == name))
            ).first()
            if row is None and _ID.fullmatch(name):
                row = (await conn.execute(_select().where(endpoints.c.id == name))).first()
        if row is None:
            raise NotFound(f"no endpoint named {name!r}")
        endpoint = _row_to_endpoint(row)
        if endpoint.owner != owner and not (for_inference and _public(endpoint.settings)):
            raise NotFound(f"no endpoint named {name!r}")
        return endpoint

    async def get_by_id(self, endpoint_id: str) -> Endpoint | None:
        if self._view is not None:
            return self._view.get(endpoint_id)
        return await self._read_by_id(endpoint_id)

    async def _read_by_id(self, endpoint_id: str) -> Endpoint | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(_select().where(endpoints.c.id == endpoint_id))).first()
        return None if row is None else _row_to_endpoint(row)

    async def list(self, owner: str | None = None) -> list[Endpoint]:
        if self._use_view:
            view = await self._load_view()
            found = [e for e in view.values() if owner is None or e.owner == owner]
            return sorted(found, key=lambda e: e.created_at)
        query = _select().order_by(endpoints.c.created_at)
        if owner is not None:
            query = query.where(endpoints.c.owner == owner)
        async with self.db.connect() as conn:
            return [_row_to_endpoint(row) for row in await conn.execute(query)]

    async def edit(
        self, owner: str, name: str, changes: dict[str, Any], bundle_name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Endpoint:
        """Apply partial ``changes`` to the settings; a new bundle or resources start a rolling update."""
        current = await self.get(owner, name)
        if current.status is EndpointStatus.DELETE_IN_PROGRESS:
            raise Conflict(f"endpoint {name!r} is being deleted")
        bundle_id, new_bundle_name = current.bundle_id, current.bundle_name
        if bundle_name is not None:
            bundle = await self.bundles.get(owner, bundle_name)
            bundle_id, new_bundle_name = bundle.id, bundle.name
        unknown = set(changes) - set(EndpointSettings.__dataclass_fields__)
        extra = self.seal_extra({**current.settings.extra, **{k: changes[k] for k in unknown}})
        known = {k: v for k, v in changes.items() if k not in unknown}
        settings = replace(current.settings, **known, extra=extra).validate()
        rollout = bundle_id != current.bundle_id or any(
            getattr(settings, f) != getattr(current.settings, f) for f in ROLLOUT_FIELDS if f != "bundle_id"
        )
        status = transition(current.status, Event.EDITED) if rollout else current.status
        if current.status is EndpointStatus.UPDATE_FAILED:
            status, rollout = EndpointStatus.UPDATE_PENDING, True  # any edit retries a failed endpoint
        values: dict[str, Any] = {
            "bundle_id": bundle_id, "bundle_name": new_bundle_name, **_settings_columns(settings.to_dict()),
            "status": status.value, "updated_at": time.time(),
        }
        if rollout:
            values.update(status_reason=None, failed_rollout=None)
        if metadata is not None:
            values["metadata"] = metadata

        def update(conn: sa.Connection) -> Endpoint:
            row = conn.execute(sa.select(endpoints).where(endpoints.c.id == current.id).with_for_update()).first()
            if row is None or row.status == EndpointStatus.DELETE_IN_PROGRESS.value:
                raise Conflict(f"endpoint {name!r} is being deleted")
            _require_bundle(conn, bundle_id, new_bundle_name)
            self.quotas.check_endpoint(settings, _owner_usage(conn, owner, current.id), current.settings)
            generation = next_generation(_record(row)) if rollout else row.generation
            return _written(conn, endpoints.update().where(endpoints.c.id == current.id).values(
                **values, generation=generation))

        edited = await self.db.write(update)
        await self._committed(current.id, edited)
        return edited

    async def request_delete(self, owner: str, name: str) -> Endpoint:
        current = await self.get(owner, name)
        await self.set_status(current.id, Event.DELETE, None)
        self._notify(current.id)
        return current

    async def set_status(self, endpoint_id: str, event: Event, reason: str | None,
                         generation: int | None = None) -> EndpointStatus | None:
        """Apply ``event`` (only to ``generation`` if given); returns the new status, None if not applied."""

        def apply(conn: sa.Connection) -> tuple[EndpointStatus | None, Endpoint | None]:
            row = conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id).with_for_update()).first()
            if row is None or (generation is not None and row.generation != generation):
                return None, None
            try:
                new = transition(EndpointStatus(row.status), event)
            except IllegalTransition:
                return None, None
            if new.value == row.status and reason is None and event not in (Event.WORKER_READY, Event.WAITING):
                return new, None  # nothing changes: no write
            values: dict[str, Any] = {"status": new.value, "updated_at": time.time()}
            if event in (Event.FAILED, Event.WORKER_READY, Event.WAITING) or reason is not None:
                values["status_reason"] = reason
            if event is Event.WORKER_READY:
                values.update(on_ready(_record(row), row.generation))
            return new, _written(conn, endpoints.update().where(endpoints.c.id == endpoint_id).values(**values))

        new, written = await self.db.write(apply)
        if written is not None:
            await self._committed(endpoint_id, written)
        return new

    async def fail_rollout(self, endpoint_id: str, generation: int, reason: str) -> bool:
        """``generation`` cannot start: roll back to the serving generation if there is one (see
        ``rollouts.on_failure``), recording the failed rollout; False if a newer edit superseded it."""

        def apply(conn: sa.Connection) -> Endpoint | None:
            row = conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id).with_for_update()).first()
            if row is None or row.generation != generation:
                return None
            try:
                status = transition(EndpointStatus(row.status), Event.FAILED)
            except IllegalTransition:
                return None
            values = on_failure(_record(row), generation, reason, time.time())
            if "settings" in values:  # rolled back to the serving generation's resources
                values.update(_settings_columns(values["settings"]))
            return _written(conn, endpoints.update().where(endpoints.c.id == endpoint_id).values(
                **values, status=status.value, updated_at=time.time()))

        written = await self.db.write(apply)
        if written is not None:
            await self._committed(endpoint_id, written)
        return written is not None

    async def remove(self, endpoint_id: str) -> None:
        await self.db.write(lambda conn: conn.execute(endpoints.delete().where(endpoints.c.id == endpoint_id)))
        await self._committed(endpoint_id)

    async def stamps(self) -> dict[str, float]:
        """``updated_at`` of every endpoint, by id: what changed since it was last read, without reading
        (and decoding) every record."""
        async with self.db.connect() as conn:
            rows = await conn.execute(sa.select(endpoints.c.id, endpoints.c.updated_at))
            return {row.id: row.updated_at for row in rows}
