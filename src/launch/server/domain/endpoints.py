"""Model endpoints: a bundle served by autoscaled workers, sync or async, owned by one user."""

from __future__ import annotations

import asyncio
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
from launch.stores.database import Database
from launch.stores.schema import bundles, endpoints

ENDPOINT_TYPES = ("sync", "async")
_ID = re.compile(r"[0-9a-f]{32}")
_QUANTITY = re.compile(r"^\d+(\.\d+)?([KMGTPE]i?|[kmgtpe])?$")
# Fields whose change needs new workers (a new generation, rolled out); the rest only rescale.
ROLLOUT_FIELDS = ("bundle_id", "cpus", "memory", "storage", "gpus", "gpu_type")


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
        if not isinstance(self.cpus, int | float) or self.cpus <= 0:
            raise InvalidRequest("cpus must be a number greater than 0")
        for name in ("memory", "storage"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _QUANTITY.fullmatch(value)):
                raise InvalidRequest(f"{name} must be a quantity such as '512Mi' or '8Gi', got {value!r}")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise InvalidRequest("gpus must be an integer >= 0")
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

    @property
    def queue(self) -> str:
        return f"endpoint.{self.id}"


def _row_to_endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id, owner=row.owner, name=row.name, endpoint_type=row.endpoint_type, bundle_id=row.bundle_id,
        bundle_name=row.bundle_name, settings=EndpointSettings.from_dict(row.settings),
        metadata=row.metadata or {}, labels=row.labels or {}, status=EndpointStatus(row.status),
        status_reason=row.status_reason, generation=row.generation, created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _select() -> sa.Select[Any]:
    return sa.select(endpoints, bundles.c.name.label("bundle_name")).join(
        bundles, bundles.c.id == endpoints.c.bundle_id
    )


class Endpoints:
    """Endpoint records. Every change wakes the reconciler through ``changed``."""

    def __init__(self, db: Database, bundles_service: Bundles) -> None:
        self.db = db
        self.bundles = bundles_service
        self.changed = asyncio.Event()
        self.listeners: list[Any] = []
        self.announce: Callable[[str], None] = lambda endpoint_id: None  # tells the other gateways

    def _notify(self, endpoint_id: str) -> None:
        self.changed_elsewhere(endpoint_id)
        self.announce(endpoint_id)

    def changed_elsewhere(self, endpoint_id: str) -> None:
        """``endpoint_id`` changed (``*``: any may have): drop what is cached, wake the control loop."""
        self.changed.set()
        for listener in self.listeners:
            listener(endpoint_id)

    async def create(
        self, owner: str, name: str, bundle_name: str, endpoint_type: str, settings: EndpointSettings,
        metadata: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
    ) -> Endpoint:
        validate_name("endpoint", name)
        if endpoint_type not in ENDPOINT_TYPES:
            raise InvalidRequest("endpoint_type must be 'sync' or 'async'")
        settings.validate()
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
            settings=settings.to_dict(), metadata=endpoint.metadata, labels=endpoint.labels,
            status=endpoint.status.value, status_reason=None, generation=1, created_at=now, updated_at=now,
        )
        try:
            await self.db.write(lambda conn: conn.execute(statement))
        except IntegrityError:
            raise AlreadyExists(f"an endpoint named {name!r} already exists") from None
        self._notify(endpoint.id)
        return endpoint

    async def get(self, owner: str, name: str) -> Endpoint:
        """One of ``owner``'s endpoints by name, or by id (as Launch's v1 API addresses them)."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(_select().where(endpoints.c.owner == owner, endpoints.c.name == name))
            ).first()
            if row is None and _ID.fullmatch(name):
                row = (
                    await conn.execute(_select().where(endpoints.c.owner == owner, endpoints.c.id == name))
                ).first()
        if row is None:
            raise NotFound(f"no endpoint named {name!r}")
        return _row_to_endpoint(row)

    async def get_by_id(self, endpoint_id: str) -> Endpoint | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(_select().where(endpoints.c.id == endpoint_id))).first()
        return None if row is None else _row_to_endpoint(row)

    async def list(self, owner: str | None = None) -> list[Endpoint]:
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
        bundle_id = current.bundle_id
        if bundle_name is not None:
            bundle_id = (await self.bundles.get(owner, bundle_name)).id
        unknown = set(changes) - set(EndpointSettings.__dataclass_fields__)
        extra = {**current.settings.extra, **{k: changes[k] for k in unknown}}
        known = {k: v for k, v in changes.items() if k not in unknown}
        settings = replace(current.settings, **known, extra=extra).validate()
        rollout = bundle_id != current.bundle_id or any(
            getattr(settings, f) != getattr(current.settings, f) for f in ROLLOUT_FIELDS if f != "bundle_id"
        )
        status = transition(current.status, Event.EDITED) if rollout else current.status
        if current.status is EndpointStatus.UPDATE_FAILED:
            status, rollout = EndpointStatus.UPDATE_PENDING, True  # any edit retries a failed endpoint
        generation = current.generation + (1 if rollout else 0)
        values: dict[str, Any] = {
            "bundle_id": bundle_id, "settings": settings.to_dict(), "status": status.value,
            "generation": generation, "updated_at": time.time(),
        }
        if rollout:
            values["status_reason"] = None
        if metadata is not None:
            values["metadata"] = metadata
        statement = endpoints.update().where(endpoints.c.id == current.id).values(**values)
        await self.db.write(lambda conn: conn.execute(statement))
        self._notify(current.id)
        return await self.get(owner, name)

    async def request_delete(self, owner: str, name: str) -> Endpoint:
        current = await self.get(owner, name)
        await self.set_status(current.id, Event.DELETE, None)
        self._notify(current.id)
        return current

    async def set_status(self, endpoint_id: str, event: Event, reason: str | None,
                         generation: int | None = None) -> EndpointStatus | None:
        """Apply ``event`` (only to ``generation`` if given); returns the new status, None if not applied."""

        def apply(conn: sa.Connection) -> tuple[EndpointStatus | None, bool]:
            row = conn.execute(
                sa.select(endpoints.c.status, endpoints.c.generation).where(endpoints.c.id == endpoint_id)
            ).first()
            if row is None or (generation is not None and row.generation != generation):
                return None, False
            try:
                new = transition(EndpointStatus(row.status), event)
            except IllegalTransition:
                return None, False
            if new.value == row.status and reason is None and event is not Event.WORKER_READY:
                return new, False  # nothing changes: no write
            values: dict[str, Any] = {"status": new.value, "updated_at": time.time()}
            if event in (Event.FAILED, Event.WORKER_READY) or reason is not None:
                values["status_reason"] = reason
            conn.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(**values))
            return new, True

        new, changed = await self.db.write(apply)
        if changed:
            self._notify(endpoint_id)
        return new

    async def remove(self, endpoint_id: str) -> None:
        await self.db.write(lambda conn: conn.execute(endpoints.delete().where(endpoints.c.id == endpoint_id)))
        self._notify(endpoint_id)
