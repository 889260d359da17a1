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

from launch.server.domain import pickler, schemas
from launch.server.domain.endpoint_states import EndpointStatus
from launch.server.domain.errors import AlreadyExists, Conflict, InvalidRequest, NotFound
from launch.server.domain.names import validate_name
from launch.server.domain.uploads import key_from_location
from launch.stores.database import Database
from launch.stores.objects import ObjectStore
from launch.stores.schema import batch_jobs, bundles, endpoints

PACKAGING_TYPES = ("cloudpickle", "zip", "command")
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
    cloudpickle_version: str | None = None  # the cloudpickle that pickled it (its environment gets the same)
    python_version: str | None = None  # the Python minor that pickled it ("3.11")
    request_schema: dict[str, Any] | None = None  # JSON Schema of a request's ``args``
    response_schema: dict[str, Any] | None = None  # JSON Schema of a result

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "packaging_type": self.packaging_type,
            "location": self.location, "metadata": self.metadata, "requirements": self.requirements,
            "env_params": self.env_params, "app_config": self.app_config, "created_at": self.created_at,
            "cloudpickle_version": self.cloudpickle_version, "python_version": self.python_version,
            "request_schema": self.request_schema, "response_schema": self.response_schema,
        }

    @property
    def environment_requirements(self) -> list[str]:
        """What its environment is built from: its requirements plus the cloudpickle that pickled it."""
        pinned = self.cloudpickle_version if self.packaging_type == "cloudpickle" else None
        return pickler.environment_requirements(self.requirements, pinned)


@dataclass(frozen=True)
class NewBundle:
    name: str
    location: str
    packaging_type: str = "cloudpickle"
    metadata: dict[str, Any] | None = None
    requirements: list[str] | None = None
    env_params: dict[str, Any] | None = None
    app_config: Any = None
    cloudpickle_version: str | None = None
    python_version: str | None = None
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] | None = None


def _row_to_bundle(row: Any) -> Bundle:
    return Bundle(
        id=row.id, owner=row.owner, name=row.name, packaging_type=row.packaging_type, location=row.location,
        object_key=row.object_key, metadata=row.metadata or {}, requirements=row.requirements or [],
        env_params=row.env_params or {}, app_config=row.app_config, created_at=row.created_at,
        cloudpickle_version=row.cloudpickle_version, python_version=row.python_version,
        request_schema=row.request_schema, response_schema=row.response_schema,
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


def check_command(metadata: dict[str, Any]) -> None:
    """A command bundle's metadata: the command that starts the user's HTTP server, its port and routes."""
    command = metadata.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(x, str) and x for x in command):
        raise InvalidRequest("command bundles need metadata.command, a non-empty list of strings (argv)")
    port = metadata.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise InvalidRequest("metadata.port must be the port the command listens on, between 1024 and 65535")
    for route in ("predict_route", "healthcheck_route"):
        value = metadata.get(route)
        if not isinstance(value, str) or not value.startswith("/"):
            raise InvalidRequest(f"metadata.{route} must be a path starting with '/'")
    env = metadata.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise InvalidRequest("metadata.env must map names to strings")


class Bundles:
    def __init__(self, db: Database, objects: ObjectStore,
                 check_requirements: Callable[[list[str]], Awaitable[None]] | None = None,
                 python_problem: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.db = db
        self.objects = objects
        self.check_requirements = check_requirements  # raises InvalidRequest for a set that cannot install
        self.python_problem = python_problem  # a Python minor → why this server cannot run it, or None

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
        if new.packaging_type == "command":
            check_command(new.metadata or {})
        requirements = clean_requirements(new.requirements)
        pickled = new.packaging_type == "cloudpickle"
        cloudpickle_version = new.cloudpickle_version if pickled else None
        python_version = new.python_version if pickled else None
        pickler.check_versions(cloudpickle_version, python_version, requirements)
        if python_version is not None and self.python_problem is not None and (
                why := await self.python_problem(python_version)) is not None:
            raise InvalidRequest(why)
        if self.check_requirements is not None:  # what the environment is built from: with the pickler's pin
            await self.check_requirements(pickler.environment_requirements(requirements, cloudpickle_version))
        bundle = Bundle(
            id=uuid.uuid4().hex, owner=owner, name=new.name, packaging_type=new.packaging_type,
            location=str(new.location), object_key=key, metadata=dict(new.metadata or {}),
            requirements=requirements, env_params=dict(new.env_params or {}),
            app_config=new.app_config, created_at=time.time(),
            cloudpickle_version=cloudpickle_version, python_version=python_version,
            request_schema=schemas.checked(new.request_schema, "request_schema"),
            response_schema=schemas.checked(new.response_schema, "response_schema"),
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
