"""The native HTTP API under /v1 (resource names after Launch's v1 API), documented by FastAPI's OpenAPI.
The prediction routes (sync and async tasks) are in ``prediction_routes``, served by the fast path."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import ORJSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from launch.server.api.auth import key_from_header
from launch.server.api.openapi import basic_auth, bearer_auth, errors
from launch.server.api.strict_json import StrictJsonRoute
from launch.server.api.views import endpoint_view
from launch.server.app import Services
from launch.server.control.callbacks import SIGNATURE_HEADER, signing_key
from launch.server.domain import endpoints as endpoint_rules
from launch.server.domain import schemas
from launch.server.domain.bundles import MAX_REQUIREMENT_CHARS, MAX_REQUIREMENTS, NewBundle
from launch.server.domain.endpoints import Endpoint, EndpointSettings
from launch.server.domain.errors import NotFound, Unauthenticated
from launch.server.domain.results import RESULT_PURPOSE
from launch.server.domain.uploads import MAX_LOCATION_CHARS
from launch.server.endpoint_logs import parse_cursor, read_logs
from launch.server.signing import verify

RESULT_REDIRECT_TTL = 300  # the signed gateway URL is the lasting one; each visit presigns anew

router = APIRouter(route_class=StrictJsonRoute)

# -- field types: the document states the rules the domain enforces ---------------------------------------
# (the name's pattern is documented, and checked by domain.names, whose message says what a name may hold)
Name = Annotated[str, Field(min_length=1, max_length=128,
                            json_schema_extra={"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"})]
Location = Annotated[str, Field(min_length=1, max_length=MAX_LOCATION_CHARS)]
Requirements = Annotated[list[Annotated[str, Field(max_length=MAX_REQUIREMENT_CHARS)]],
                         Field(max_length=MAX_REQUIREMENTS)]
Quantity = Annotated[str, Field(max_length=32, pattern=r"^\d{1,12}(\.\d{1,6})?([KMGTPE]i?|[kmgtpe])?$")]
Cpus = Annotated[float, Field(gt=0, le=endpoint_rules.MAX_CPUS)]
Gpus = Annotated[int, Field(ge=0, le=endpoint_rules.MAX_GPUS)]
MinWorkers = Annotated[int, Field(ge=0, le=endpoint_rules.MAX_WORKERS)]
MaxWorkers = Annotated[int, Field(ge=1, le=endpoint_rules.MAX_WORKERS)]
PerWorker = Annotated[int, Field(ge=1, le=endpoint_rules.MAX_PER_WORKER)]
GpuType = Annotated[str, Field(max_length=64)]
Labels = Annotated[dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=1024)]],
                   Field(max_length=64)]
# NaN and Infinity are refused: StrictJsonRoute refuses them as literals, allow_inf_nan as strings ("NaN").
FINITE = ConfigDict(allow_inf_nan=False)


def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def owner(request: Request, _basic: None = Security(basic_auth),
                _bearer: None = Security(bearer_auth)) -> str:
    """The authenticated owner of the request (API key as basic-auth user name or bearer token)."""
    return await services(request).api_keys.authenticate(key_from_header(request.headers.get("authorization")))


class CreateBundle(BaseModel):
    model_config = FINITE
    name: Name
    location: Location
    packaging_type: Literal["cloudpickle", "zip", "command"] = "cloudpickle"
    metadata: dict[str, Any] = Field(default_factory=dict)
    requirements: Requirements = Field(default_factory=list)
    env_params: dict[str, Any] = Field(default_factory=dict)
    app_config: Any = None
    cloudpickle_version: str | None = Field(None, max_length=64, description="the cloudpickle that pickled it")
    python_version: str | None = Field(None, max_length=16, description="the Python minor that pickled it: '3.11'")
    request_schema: dict[str, Any] | None = Field(None, description="JSON Schema of a request's args")
    response_schema: dict[str, Any] | None = Field(None, description="JSON Schema of a result")


class CloneBundle(BaseModel):
    model_config = FINITE
    new_name: Name
    app_config: Any = None


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="allow", **FINITE)
    name: Name
    bundle_name: Name
    endpoint_type: Literal["sync", "async", "streaming"] = "sync"
    cpus: Cpus = 3
    memory: Quantity = "8Gi"
    storage: Quantity | None = None
    gpus: Gpus = 0
    gpu_type: GpuType | None = None
    min_workers: MinWorkers = 1
    max_workers: MaxWorkers = 1
    per_worker: PerWorker = 10
    post_inference_hooks: list[Annotated[str, Field(max_length=256)]] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)

    def settings(self) -> EndpointSettings:
        return EndpointSettings(
            cpus=self.cpus, memory=self.memory, storage=self.storage, gpus=self.gpus, gpu_type=self.gpu_type,
            min_workers=self.min_workers, max_workers=self.max_workers, per_worker=self.per_worker,
            post_inference_hooks=self.post_inference_hooks, extra=dict(self.model_extra or {}),
        )


class EditEndpoint(BaseModel):
    model_config = ConfigDict(extra="allow", **FINITE)
    bundle_name: Name | None = None
    cpus: Cpus | None = None
    memory: Quantity | None = None
    storage: Quantity | None = None
    gpus: Gpus | None = None
    gpu_type: GpuType | None = None
    min_workers: MinWorkers | None = None
    max_workers: MaxWorkers | None = None
    per_worker: PerWorker | None = None
    post_inference_hooks: list[Annotated[str, Field(max_length=256)]] | None = None
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
    model_config = FINITE
    bundle_name: Name
    input_location: Location
    serialization_format: Literal["json", "pickle"] = "json"
    options: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] = Field(default_factory=dict)



@router.post("/v1/uploads", tags=["uploads"], responses=errors(401))
async def create_upload(request: Request, kind: Literal["bundles", "batch-inputs"] = "bundles",
                        who: str = Depends(owner)) -> dict[str, str]:
    """A signed URL that accepts one PUT of raw bytes; name the upload by ``location`` afterwards."""
    ticket = services(request).uploads.ticket(who, kind)
    return {"upload_url": ticket.url, "location": ticket.location, "bucket": ticket.bucket, "key": ticket.key}


@router.put("/v1/uploads/{token}", tags=["uploads"], responses=errors(400, 401, 409))
async def receive_upload(token: str, request: Request) -> dict[str, Any]:
    uploads = services(request).uploads
    key = uploads.key_for_token(token)
    if key is None:
        raise Unauthenticated("upload URL is invalid or expired")
    size = await uploads.receive(key, request.stream())
    return {"key": key, "size": size}


@router.get("/v1/results/{token}", tags=["tasks"], responses=errors(401, 404))
async def download_result(token: str, request: Request) -> Response:
    """A pickled result, by the signed URL given in ``result_url``."""
    svc = services(request)
    key = verify(svc.secret, RESULT_PURPOSE, token)
    if key is None:
        raise Unauthenticated("result URL is invalid or expired")
    if svc.objects.presigns:  # the bytes go from the bucket to the client, not through the gateway
        if not await svc.objects.exists(key):  # deleted (retention): say so here, not in the bucket's words
            raise NotFound("the result no longer exists")
        url = svc.objects.presigned_get(key, RESULT_REDIRECT_TTL)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    try:
        data = await svc.objects.get(key)
    except KeyError:
        raise NotFound("the result no longer exists") from None
    return Response(data, media_type="application/octet-stream")


@router.post("/v1/model-bundles", tags=["model bundles"], responses=errors(401, 409))
async def create_bundle(body: CreateBundle, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    bundle = await services(request).bundles.create(who, NewBundle(**body.model_dump()))
    return bundle.to_dict()


@router.get("/v1/model-bundles", tags=["model bundles"], responses=errors(401))
async def list_bundles(request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return {"bundles": [b.to_dict() for b in await services(request).bundles.list(who)]}


@router.get("/v1/model-bundles/{name}", tags=["model bundles"], responses=errors(401, 404))
async def get_bundle(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return (await services(request).bundles.get(who, name)).to_dict()


@router.delete("/v1/model-bundles/{name}", tags=["model bundles"], responses=errors(401, 404, 409))
async def delete_bundle(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).bundles.delete(who, name)
    return {"deleted": True}


@router.post("/v1/model-bundles/{name}/clone", tags=["model bundles"], responses=errors(401, 404, 409))
async def clone_bundle(name: str, body: CloneBundle, request: Request,
                       who: str = Depends(owner)) -> dict[str, Any]:
    return (await services(request).bundles.clone(who, name, body.new_name, body.app_config)).to_dict()


@router.post("/v1/model-endpoints", tags=["model endpoints"], responses=errors(401, 404, 409))
async def create_endpoint(body: CreateEndpoint, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.create(who, body.name, body.bundle_name, body.endpoint_type, body.settings(),
                                          body.metadata, body.labels)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.get("/v1/model-endpoints", tags=["model endpoints"], responses=errors(401), response_model=dict[str, Any])
async def list_endpoints(request: Request, who: str = Depends(owner)) -> ORJSONResponse:
    """Serialised directly (no response model validation): a list of 1,000 endpoints stays a few ms."""
    svc = services(request)
    return ORJSONResponse(
        {"endpoints": [endpoint_view(e, svc.pools.get(e.id)) for e in await svc.endpoints.list(who)]}
    )


@router.get("/v1/model-endpoints/{name}", tags=["model endpoints"], responses=errors(401, 404))
async def get_endpoint(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.get(who, name)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.put("/v1/model-endpoints/{name}", tags=["model endpoints"], responses=errors(401, 404, 409))
async def edit_endpoint(name: str, body: EditEndpoint, request: Request,
                        who: str = Depends(owner)) -> dict[str, Any]:
    svc = services(request)
    endpoint = await svc.endpoints.edit(who, name, body.changes(), body.bundle_name, body.metadata)
    return endpoint_view(endpoint, svc.pools.get(endpoint.id))


@router.delete("/v1/model-endpoints/{name}", tags=["model endpoints"], responses=errors(401, 404, 409))
async def delete_endpoint(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    await services(request).endpoints.request_delete(who, name)
    return {"deleted": True}


@router.get("/v1/model-endpoints/{name}/logs", tags=["model endpoints"], responses=errors(401, 404))
async def endpoint_logs(name: str, request: Request, who: str = Depends(owner),
                        since_seconds: float | None = Query(None, ge=0, allow_inf_nan=False,
                                                            description="Only lines of the last N seconds"),
                        cursor: str | None = Query(None, max_length=8192,
                                                   description="Only what came after a previous answer's cursor "
                                                               "(to follow the logs)")
                        ) -> dict[str, Any]:
    """Creation logs: rollout timeline, environment build output, cold-start timelines and worker logs
    (timestamped lines), oldest first. ``cursor`` in the answer continues where it stopped."""
    svc = services(request)
    endpoint = await svc.endpoints.get(who, name)
    log_dir = svc.reconciler.log_dir(endpoint.id)
    if since_seconds is None and cursor is None:
        content = await asyncio.to_thread(endpoint_creation_logs, svc, endpoint)
        _, next_cursor = await asyncio.to_thread(read_logs, log_dir, time.time())
    else:
        since = time.time() - since_seconds if since_seconds is not None else None
        content, next_cursor = await asyncio.to_thread(read_logs, log_dir, since, parse_cursor(cursor))
    return {"content": content, "status_reason": endpoint.status_reason, "status": endpoint.status.value,
            "failed_rollout": endpoint.failed_rollout.to_dict() if endpoint.failed_rollout else None,
            "cursor": next_cursor}


@router.get("/v1/model-endpoints/{name}/openapi.json", tags=["model endpoints"], responses=errors(401, 404))
async def endpoint_openapi(name: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    """The endpoint's own OpenAPI document: its prediction route with its bundle's request and response
    schemas."""
    endpoint = await services(request).endpoints.get(who, name)
    return schemas.endpoint_openapi(endpoint.name, endpoint.endpoint_type, endpoint.request_schema,
                                    endpoint.response_schema)


def endpoint_creation_logs(svc: Services, endpoint: Endpoint) -> str:
    """Rollout timeline, environment build output and worker logs; the reason of a failure last."""
    content = svc.reconciler.creation_logs(endpoint.id)
    if endpoint.status_reason:
        content += f"==> status {endpoint.status.value} <==\n{endpoint.status_reason}\n"
    return content


@router.get("/v1/callbacks/signing-key", tags=["tasks"], responses=errors(401))
async def callback_signing_key(request: Request, who: str = Depends(owner)) -> dict[str, str]:
    """The key your task callbacks are signed with (``Launch-Signature``: HMAC-SHA256 of ``"<t>." + body``)."""
    return {"signing_key": signing_key(services(request).secret, who), "header": SIGNATURE_HEADER}


@router.post("/v1/batch-jobs", tags=["batch jobs"], responses=errors(401, 404))
async def create_batch_job(body: CreateBatchJob, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    """Run a bundle over an uploaded CSV of inputs (``id,url`` or ``id,args``); poll the job for its results."""
    jobs = services(request).batch_jobs
    job = await jobs.create(who, bundle_name=body.bundle_name, input_location=body.input_location,
                            serialization_format=body.serialization_format, options=body.options, labels=body.labels)
    return await jobs.view(who, job.id)


@router.get("/v1/batch-jobs/{job_id}", tags=["batch jobs"], responses=errors(401, 404))
async def get_batch_job(job_id: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
    return await services(request).batch_jobs.view(who, job_id)
