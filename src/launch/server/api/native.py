"""The native HTTP API under /v1 (resource names after Launch's v1 API), documented by FastAPI's OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import ORJSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from launch.server.api.auth import key_from_header
from launch.server.api.fast_path import endpoint_ref
from launch.server.api.views import endpoint_view
from launch.server.app import Services
from launch.server.domain.bundles import NewBundle
from launch.server.domain.endpoints import EndpointSettings
from launch.server.domain.errors import NotFound, Unauthenticated
from launch.server.domain.results import RESULT_PURPOSE
from launch.server.predictions import MAX_WAIT_SECONDS
from launch.server.signing import verify

RESULT_REDIRECT_TTL = 300  # the signed gateway URL is the lasting one; each visit presigns anew

router = APIRouter()


def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def owner(request: Request) -> str:
    """The authenticated owner of the request (API key as basic-auth user name or bearer token)."""
    return await services(request).api_keys.authenticate(key_from_header(request.headers.get("authorization")))


class CreateBundle(BaseModel):
    name: str
    location: str
    packaging_type: str = "cloudpickle"
    metadata: dict[str, Any] = Field(default_factory=dict)
    requirements: list[str] = Field(default_factory=list)
    env_params: dict[str, Any] = Field(default_factory=dict)
    app_config: Any = None


class CloneBundle(BaseModel):
    new_name: str
    app_config: Any = None


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    bundle_name: str
    endpoint_type: str = "sync"
    cpus: float = 3
    memory: str = "8Gi"
    storage: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    min_workers: int = 1
    max_workers: int = 1
    per_worker: int = 10
    post_inference_hooks: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    def settings(self) -> EndpointSettings:
        return EndpointSettings(
            cpus=self.cpus, memory=self.memory, storage=self.storage, gpus=self.gpus, gpu_type=self.gpu_type,
            min_workers=self.min_workers, max_workers=self.max_workers, per_worker=self.per_worker,
            post_inference_hooks=self.post_inference_hooks, extra=dict(self.model_extra or {}),
        )


class EditEndpoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    bundle_name: str | None = None
    cpus: float | None = None
    memory: str | None = None
    storage: str | None = None
    gpus: int | None = None
    gpu_type: str | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    per_worker: int | None = None
    post_inference_hooks: list[str] | None = None
    metadata: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True, exclude={"bundle_name", "metadata"})
        if data.get("gpus") == 0:
            data.setdefault("gpu_type", None)
        return data


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class CreateBatchJob(BaseModel):
    bundle_name: str
    input_location: str
    serialization_format: str = "json"
    options: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] = Field(default_factory=dict)


@router.post("/v1/uploads", tags=["uploads"])
async def create_upload(request: Request, kind: Literal["bundles", "batch-inputs"] = "bundles",
                        who: str = Depends(owner)) -> dict[str, str]:
    """A signed URL that accepts one PUT of raw bytes; name the upload by ``location`` afterwards."""
    ticket = services(request).uploads.ticket(who, kind)
    return {"upload_url": ticket.url, "location": ticket.location, "bucket": ticket.bucket, "key": ticket.key}


@router.put("/v1/uploads/{token}", tags=["uploads"])
async def receive_upload(token: str, request: Request) -> dict[str, Any]:
    uploads = services(request).uploads
    key = uploads.key_for_token(token)
    if key is None:
        raise Unauthenticated("upload URL is invalid or expired")
    size = await uploads.receive(key, request.stream())
    return {"key": key, "size": size}


@router.get("/v1/results/{token}", tags=["tasks"])
async def download_result(token: str, request: Request) -> Response:
    """A pickled result, by the signed URL given in ``result_url``."""
    svc = services(request)
    key = verify(svc.secret, RESULT_PURPOSE, token)
    if key is None:
        raise Unauthenticated("result URL is invalid or expired")
    if svc.objects.presigns:  # the bytes go from the bucket to the client, not through the gateway
        url = svc.objects.presigned_get(key, RESULT_REDIRECT_TTL)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    try:
        data = await svc.objects.get(key)
    except KeyError:
        raise NotFound("the result no longer exists") from None
    return Response(data, media_type="application/octet-stream")


@router.post("/v1/model-bundles", tags=["model bundles"])
async def create_bundle(body: CreateBundle, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    bundle = await services(request).bundles.create(who, NewBundle(**body.model_dump()))
    return bundle.to_dict()


@router.get("/v1/model-bundles", tags=["model bundles"])
async def list_bundles(request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return {"bundles": [b.to_dict() for b in await services(request).bundles.list(who)]}


@router.get("/v1/model-bundles/{name}", tags=["model bundles"])
async def get_bundle(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return (await services(request).bundles.get(who, name)).to_dict()


@router.delete("/v1/model-bundles/{name}", tags=["model bundles"])
async def delete_bundle(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).bundles.delete(who, name)
    return {"deleted": True}


@router.post("/v1/model-bundles/{name}/clone", tags=["model bundles"])
async def clone_bundle(name: str, body: CloneBundle, request: Request,
                       who: str = Depends(owner)) -> dict[str, Any]:
    return (await services(request).bundles.clone(who, name, body.new_name, body.app_config)).to_dict()


@router.post("/v1/model-endpoints", tags=["model endpoints"])
async def create_endpoint(body: CreateEndpoint, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.create(who, body.name, body.bundle_name, body.endpoint_type, body.settings(),
                                          body.metadata, body.labels)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.get("/v1/model-endpoints", tags=["model endpoints"])
async def list_endpoints(request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    return {"endpoints": [endpoint_view(e, svc.pools.get(e.id)) for e in await svc.endpoints.list(who)]}


@router.get("/v1/model-endpoints/{name}", tags=["model endpoints"])
async def get_endpoint(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.get(who, name)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.put("/v1/model-endpoints/{name}", tags=["model endpoints"])
async def edit_endpoint(name: str, body: EditEndpoint, request: Request,
                        who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.edit(who, name, body.changes(), body.bundle_name, body.metadata)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.delete("/v1/model-endpoints/{name}", tags=["model endpoints"])
async def delete_endpoint(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).endpoints.request_delete(who, name)
    return {"deleted": True}


@router.get("/v1/model-endpoints/{name}/logs", tags=["model endpoints"])
async def endpoint_logs(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    """Creation logs: environment build output and worker logs, oldest first."""
    svc = services(request)
    endpoint = await svc.endpoints.get(who, name)
    return {"content": svc.reconciler.creation_logs(endpoint.id), "status_reason": endpoint.status_reason}


@router.post("/v1/sync-tasks", tags=["tasks"], response_class=ORJSONResponse)
async def sync_task(request: Request, endpoint: str = Depends(endpoint_ref), who: str = Depends(owner)) -> Response:
    """Run one prediction and wait for it: ``{"args": {...}}`` or ``{"url": "..."}``, ``return_pickled``."""
    body = await services(request).predictions.sync(who, endpoint, await request.body())
    return Response(body, media_type="application/json")


@router.post("/v1/async-tasks", tags=["tasks"])
async def async_task(request: Request, endpoint: str = Depends(endpoint_ref),
                     who: str = Depends(owner)) -> dict[str, str]:
    """Queue one prediction; poll ``GET /v1/async-tasks/{task_id}`` for its result."""
    task_id = await services(request).predictions.submit(who, endpoint, await request.body())
    return {"task_id": task_id}


@router.get("/v1/async-tasks/{task_id}", tags=["tasks"])
async def get_task(task_id: str, request: Request, wait: float = Query(0.0, ge=0, le=MAX_WAIT_SECONDS),
                   who: str = Depends(owner)) -> dict[str, Any]:
    """The task's status (PENDING, SUCCESS or FAILURE) and result. ``wait`` (seconds): answer as soon as the
    task ends, or after that long (long-poll)."""
    return await services(request).predictions.task_view(who, task_id, wait)


@router.post("/v1/batch-jobs", tags=["batch jobs"])
async def create_batch_job(body: CreateBatchJob, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    """Run a bundle over an uploaded CSV of inputs (``id,url`` or ``id,args``); poll the job for its results."""
    jobs = services(request).batch_jobs
    job = await jobs.create(who, bundle_name=body.bundle_name, input_location=body.input_location,
                            serialization_format=body.serialization_format, options=body.options, labels=body.labels)
    return await jobs.view(who, job.id)


@router.get("/v1/batch-jobs/{job_id}", tags=["batch jobs"])
async def get_batch_job(job_id: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return await services(request).batch_jobs.view(who, job_id)
