"""The legacy API used by scale-launch 0.3.3, under /v1/hosted_inference (a thin translation layer).

Every route calls the same services as the native API (the task routes are in ``prediction_routes``, on
the fast path); this module only renames fields (``bundle_name`` →
``name``, ``status`` → ``state``, ...) and keeps the transport promises the 0.3.3 client relies on: JSON on
every answer, 404 for unknown objects and routes, no redirects, and never a status the client retries
(503/504/520/524) for a sync prediction that timed out. The contract is shared/spec/legacy-api.md.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException

from launch.server.api.methods import CATCH_ALL, allowed_methods
from launch.server.api.native import (
    FINITE,
    CloneBundle,
    CreateBundle,
    CreateEndpoint,
    EditEndpoint,
    Labels,
    Location,
    Name,
    endpoint_creation_logs,
    owner,
    services,
)
from launch.server.api.openapi import errors
from launch.server.api.strict_json import StrictJsonRoute
from launch.server.api.views import endpoint_view
from launch.server.app import Services
from launch.server.domain.bundles import Bundle, NewBundle
from launch.server.domain.endpoints import Endpoint
from launch.server.domain.errors import NotFound

PREFIX = "/v1/hosted_inference"
router = APIRouter(prefix=PREFIX, route_class=StrictJsonRoute)


class BundleNameConvertor(StringConvertor):
    """A bundle name in a path, never ``clone_with_changes`` (that path is the clone route's, POST only)."""

    regex = "(?!clone_with_changes$)[^/]+"


register_url_convertor("legacy_bundle", BundleNameConvertor())


# -- request bodies: the native models under the legacy field names ----------------------------------------
class LegacyCreateBundle(CreateBundle):
    """``location`` is the ``s3://{bucket}/{key}`` of an upload to this server (in self-hosted mode too: the
    client's location function must name one), so that every bundle accepted can be loaded."""

    name: Name = Field(alias="bundle_name")
    metadata: dict[str, Any] = Field(default_factory=dict, alias="bundle_metadata")
    location: Location

    def new_bundle(self) -> NewBundle:
        return NewBundle(**self.model_dump())


class LegacyCloneBundle(CloneBundle):
    existing_bundle_name: Name
    new_name: Name = Field(alias="new_bundle_name")


class LegacyCreateEndpoint(CreateEndpoint):
    """Unknown fields (from a client's endpoint auth decorator) are kept in the settings' ``extra``. Only sync
    and async endpoints: the 0.3.3 client cannot read a streaming one (it raises after creating it)."""

    name: Name = Field(alias="endpoint_name")
    endpoint_type: Literal["sync", "async"] = "sync"


class LegacyBatchJob(BaseModel):
    """Batch task options (``cpus``, ``max_workers``, ...) and auth-decorator fields arrive flattened."""

    model_config = ConfigDict(extra="allow", **FINITE)
    input_path: Location
    serialization_format: Literal["json", "pickle"] = "json"
    labels: Labels | None = None


# -- response shapes --------------------------------------------------------------------------------------
def bundle_object(bundle: Bundle) -> dict[str, Any]:
    return {**bundle.to_dict(), "bundle_id": bundle.id}


def endpoint_object(svc: Services, endpoint: Endpoint) -> dict[str, Any]:
    """The native endpoint view. Our creation has no separate task: its progress is ``status``."""
    return {**endpoint_view(endpoint, svc.pools.get(endpoint.id)), "endpoint_creation_task_id": endpoint.id}


def upload_object(svc: Services, who: str, kind: str) -> dict[str, str]:
    """A signed URL on this server; the client PUTs to it and sends back ``s3://{bucket}/{key}``."""
    ticket = svc.uploads.ticket(who, kind)
    return {"signedUrl": ticket.url, "bucket": ticket.bucket, "key": ticket.key}


# -- bundles ------------------------------------------------------------------------------------------------
@router.post("/model_bundle_upload", responses=errors(401))
async def bundle_upload(request: Request, who: str = Depends(owner)) -> dict[str, str]:
    return upload_object(services(request), who, "bundles")


@router.post("/model_bundle/clone_with_changes", responses=errors(401, 404, 409))
async def clone_bundle(body: LegacyCloneBundle, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    bundles = services(request).bundles
    return bundle_object(await bundles.clone(who, body.existing_bundle_name, body.new_name, body.app_config))


@router.post("/model_bundle", responses=errors(401, 409))
async def create_bundle(body: LegacyCreateBundle, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return bundle_object(await services(request).bundles.create(who, body.new_bundle()))


@router.get("/model_bundle", responses=errors(401))
async def list_bundles(request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return {"bundles": [bundle_object(b) for b in await services(request).bundles.list(who)]}


@router.get("/model_bundle/{bundle_name:legacy_bundle}", responses=errors(401, 404))
async def get_bundle(bundle_name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return {"bundles": [bundle_object(await services(request).bundles.get(who, bundle_name))]}


@router.delete("/model_bundle/{bundle_name:legacy_bundle}", responses=errors(401, 404, 409))
async def delete_bundle(bundle_name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).bundles.delete(who, bundle_name)
    return {"deleted": True}


# -- endpoints (fixed and longer paths first) ---------------------------------------------------------------
@router.get("/endpoints/creation_logs/{endpoint_name}", responses=errors(401, 404))
async def creation_logs(endpoint_name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    """Environment build output and worker logs; the reason of a failed update is appended."""
    svc = services(request)
    return {"content": endpoint_creation_logs(svc, await svc.endpoints.get(who, endpoint_name))}


@router.post("/endpoints", responses=errors(401, 404, 409))
async def create_endpoint(body: LegacyCreateEndpoint, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.create(who, body.name, body.bundle_name, body.endpoint_type, body.settings(),
                                          body.metadata, body.labels)
    return endpoint_object(svc, endpoint)


@router.get("/endpoints", responses=errors(401), response_model=dict[str, Any])
async def list_endpoints(request: Request, who: str = Depends(owner)) -> ORJSONResponse:
    svc = services(request)
    return ORJSONResponse({"endpoints": [endpoint_object(svc, e) for e in await svc.endpoints.list(who)]})


@router.get("/endpoints/{endpoint_name}", responses=errors(401, 404))
async def get_endpoint(endpoint_name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    return endpoint_object(svc, await svc.endpoints.get(who, endpoint_name))


@router.put("/endpoints/{endpoint_name}", responses=errors(401, 404, 409))
async def edit_endpoint(endpoint_name: str, body: EditEndpoint, request: Request,
                        who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.edit(who, endpoint_name, body.changes(), body.bundle_name, body.metadata)
    return endpoint_object(svc, endpoint)


@router.delete("/endpoints/{endpoint_name}", responses=errors(401, 404, 409))
async def delete_endpoint(endpoint_name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).endpoints.request_delete(who, endpoint_name)
    return {"deleted": True}


# -- batch jobs ---------------------------------------------------------------------------------------------
@router.post("/batch_task_input_upload", responses=errors(401))
async def batch_input_upload(request: Request, who: str = Depends(owner)) -> dict[str, str]:
    return upload_object(services(request), who, "batch-inputs")


# One path template for both batch_job routes (OpenAPI forbids two that differ only in a parameter's name).
@router.post("/batch_job/{name_or_id}", responses=errors(401, 404))
async def create_batch_job(body: LegacyBatchJob, request: Request, who: str = Depends(owner),
                           name_or_id: str = Path(description="The bundle to run")) -> dict[str, str]:
    job = await services(request).batch_jobs.create(
        who, bundle_name=name_or_id, input_location=body.input_path,
        serialization_format=body.serialization_format, options=dict(body.model_extra or {}),
        labels=body.labels or {},
    )
    return {"job_id": job.id}


@router.get("/batch_job/{name_or_id}", responses=errors(401, 404))
async def get_batch_job(request: Request, who: str = Depends(owner),
                        name_or_id: str = Path(description="The job's id")) -> dict[str, Any]:
    """The job view, with the options it was created with (cloud-only ones such as ``pyspark_*`` and
    auth-decorator fields are stored and shown back, not used)."""
    return await services(request).batch_jobs.view(who, name_or_id)


# -- anything else under the prefix: a JSON 404 (405 for a known route), never a trailing-slash redirect ------
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]


@router.api_route("", methods=_ANY_METHOD, include_in_schema=False, name=CATCH_ALL)
@router.api_route("/{path:path}", methods=_ANY_METHOD, include_in_schema=False, name=CATCH_ALL)
async def unknown_route(request: Request) -> None:
    if allowed_methods(request):
        raise HTTPException(405)  # api.errors names every allowed method
    path = request.url.path.removeprefix(PREFIX)
    hint = "; the client's base URL must not end with '/'" if "//" in request.url.path or path in ("", "/") else ""
    raise NotFound(f"no legacy API route {request.method} {request.url.path}{hint}")
