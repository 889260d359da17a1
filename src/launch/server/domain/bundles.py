"""Model bundles: a pickled callable (or a zip of code) plus requirements, owned by one user."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from packaging.requirements import InvalidRequirement, Requirement
from sqlalchemy.exc import IntegrityError

from launch.server.domain.endpoint_states import EndpointStatus
from launch.server.domain.errors import AlreadyExists, Conflict, InvalidRequest, NotFound
from launch.server.domain.names import validate_name
from launch.server.domain.uploads import key_from_location
from launch.stores.database import Database
from launch.stores.objects import ObjectStore
from launch.stores.schema import batch_jobs, bundles, endpoints

PACKAGING_TYPES = ("cloudpickle", "zip")
UNFINISHED_BATCH_STATES = ("PENDING", "RUNNING")
MAX_REQUIREMENTS = 500
MAX_REQUIREMENT_CHARS = 1000


@dataclass(frozen=True)
class Bundle:
    id: str
    owner: str
    name: str
    packaging_type: str
    location: str
    object_key: str | None
    metadata: dict[str, Any]
    requirements: list[str]
    env_params: dict[str, Any]
    app_config: Any
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "packaging_type": self.packaging_type,
            "location": self.location, "metadata": self.metadata, "requirements": self.requirements,
            "env_params": self.env_params, "app_config": self.app_config, "created_at": self.created_at,
        }


@dataclass(frozen=True)
class NewBundle:
    name: str
    location: str
    packaging_type: str = "cloudpickle"
    metadata: dict[str, Any] | None = None
    requirements: list[str] | None = None
    env_params: dict[str, Any] | None = None
    app_config: Any = None


def _row_to_bundle(row: Any) -> Bundle:
    return Bundle(
        id=row.id, owner=row.owner, name=row.name, packaging_type=row.packaging_type, location=row.location,
        object_key=row.object_key, metadata=row.metadata or {}, requirements=row.requirements or [],
        env_params=row.env_params or {}, app_config=row.app_config, created_at=row.created_at,
    )


def clean_requirements(lines: list[str] | None) -> list[str]:
    """Requirement lines without blanks and comments (``create_model_bundle_from_dirs`` sends them raw)."""
    if lines is None:
        return []
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise InvalidRequest("requirements must be a list of strings")
    cleaned = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if len(cleaned) > MAX_REQUIREMENTS or any(len(line) > MAX_REQUIREMENT_CHARS for line in cleaned):
        raise InvalidRequest(f"requirements: at most {MAX_REQUIREMENTS} lines of at most {MAX_REQUIREMENT_CHARS} "
                             "characters")
    for line in cleaned:
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise InvalidRequest(f"requirements: {line[:200]!r} is not a requirement: {exc}") from None
    return cleaned


class Bundles:
    def __init__(self, db: Database, objects: ObjectStore,
                 check_requirements: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.objects = objects
        self.check_requirements = check_requirements  # raises InvalidRequest for a set that cannot install

    async def create(self, owner: str, new: NewBundle) -> Bundle:
        validate_name("bundle", new.name)
        if new.packaging_type not in PACKAGING_TYPES:
            raise InvalidRequest(f"packaging_type must be one of {', '.join(PACKAGING_TYPES)}")
        key = key_from_location(owner, new.location)
        if key is None:  # a bundle no worker could ever load: refused now, not at every endpoint start
            raise InvalidRequest(
                f"location {str(new.location)[:200]!r} is not an upload of this server: ask for an upload URL "
                "(POST /v1/uploads), PUT the bundle there, then name it by the location it gave")
        if not await self.objects.exists(key):
            raise InvalidRequest(f"nothing was uploaded to {new.location!r}; PUT the bundle to its upload URL first")
        if new.packaging_type == "zip" and not (new.metadata or {}).get("load_predict_fn_module_path"):
            raise InvalidRequest("zip bundles need metadata.load_predict_fn_module_path")
        requirements = clean_requirements(new.requirements)
        if self.check_requirements is not None:
            await self.check_requirements(requirements)
        bundle = Bundle(
            id=uuid.uuid4().hex, owner=owner, name=new.name, packaging_type=new.packaging_type,
            location=str(new.location), object_key=key, metadata=dict(new.metadata or {}),
            requirements=requirements, env_params=dict(new.env_params or {}),
            app_config=new.app_config, created_at=time.time(),
        )
        await self._insert(bundle)
        return bundle

    async def _insert(self, bundle: Bundle) -> None:
        values = {k: v for k, v in bundle.__dict__.items()}
        try:
            await self.db.write(lambda conn: conn.execute(bundles.insert().values(**values)))
        except IntegrityError:
            raise AlreadyExists(f"a bundle named {bundle.name!r} already exists") from None

    async def get(self, owner: str, name: str) -> Bundle:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(sa.select(bundles).where(bundles.c.owner == owner, bundles.c.name == name))
            ).first()
        if row is None:
            raise NotFound(f"no bundle named {name!r}")
        return _row_to_bundle(row)

    async def get_by_id(self, bundle_id: str) -> Bundle:
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(bundles).where(bundles.c.id == bundle_id))).first()
        if row is None:
            raise NotFound(f"no bundle with id {bundle_id!r}")
        return _row_to_bundle(row)

    async def list(self, owner: str) -> list[Bundle]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(bundles).where(bundles.c.owner == owner).order_by(bundles.c.created_at)
            )
            return [_row_to_bundle(row) for row in rows]

    async def delete(self, owner: str, name: str) -> None:
        bundle = await self.get(owner, name)

        def delete_unused(conn: sa.Connection) -> None:
            # Live endpoints (the bundle they are asked to serve, or the one that still serves during a
            # rollout) and unfinished batch jobs claim the bundle; endpoints being deleted and finished jobs
            # only keep a record of its name.
            in_use = conn.execute(sa.select(endpoints.c.name).where(
                sa.or_(endpoints.c.bundle_id == bundle.id, endpoints.c.serving_bundle_id == bundle.id),
                endpoints.c.status != EndpointStatus.DELETE_IN_PROGRESS.value,
            )).first()
            if in_use is not None:
                raise Conflict(f"bundle {name!r} is used by endpoint {in_use.name!r}; delete or edit it first")
            job = conn.execute(sa.select(batch_jobs.c.id).where(
                batch_jobs.c.bundle_id == bundle.id, batch_jobs.c.status.in_(UNFINISHED_BATCH_STATES),
            )).first()
            if job is not None:
                raise Conflict(f"bundle {name!r} is running batch job {job.id}; delete it once the job ended")
            conn.execute(bundles.delete().where(bundles.c.id == bundle.id))

        await self.db.write(delete_unused)
        if bundle.object_key and not await self._key_shared(bundle.object_key):
            await self.objects.delete(bundle.object_key)

    async def _key_shared(self, key: str) -> bool:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(bundles.c.id).where(bundles.c.object_key == key))).first() is not None

    async def clone(self, owner: str, existing: str, new_name: str, app_config: Any) -> Bundle:
        """A new bundle with the same code under ``new_name`` and a new ``app_config``."""
        validate_name("bundle", new_name)
        source = await self.get(owner, existing)
        clone = Bundle(**{**source.__dict__, "id": uuid.uuid4().hex, "name": new_name,
                          "app_config": app_config, "created_at": time.time()})
        await self._insert(clone)
        return clone
