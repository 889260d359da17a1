"""Seeing what the platform does: ``/metrics`` for Prometheus (an admin key, unless ``metrics_public``), and
``/v1/status`` — the JSON behind the dashboard and ``launch status``: an owner sees their own endpoints, tasks
and batch jobs; an admin key sees everyone's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from launch.server.api.auth import key_from_header
from launch.server.api.native import services
from launch.server.api.openapi import basic_auth, bearer_auth, errors
from launch.server.api.strict_json import StrictJsonRoute
from launch.server.domain.errors import Forbidden, NotFound
from launch.server.metrics import exposition

router = APIRouter(route_class=StrictJsonRoute)


class Viewer:
    """Who looks: the key's owner, and whether the key is an admin key (then ``scope`` is everyone: None)."""

    def __init__(self, owner: str, admin: bool) -> None:
        self.owner = owner
        self.admin = admin

    @property
    def scope(self) -> str | None:
        return None if self.admin else self.owner


async def viewer(request: Request, _basic: None = Security(basic_auth),
                 _bearer: None = Security(bearer_auth)) -> Viewer:
    owner, admin = await services(request).api_keys.identify(key_from_header(request.headers.get("authorization")))
    return Viewer(owner, admin)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format. Scrape it with an admin API key as a bearer token (or basic-auth user name)."""
    svc = services(request)
    if not svc.settings.metrics_public:
        who = await viewer(request)
        if not who.admin:
            raise Forbidden("/metrics shows every owner's endpoints: scrape it with an admin API key "
                            "(launch api-keys create --user NAME --admin)")
    await svc.status.refresh()
    return Response(exposition(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/status", tags=["status"], responses=errors(401))
async def status(request: Request, who: Viewer = Depends(viewer)) -> dict[str, Any]:
    """Your endpoints (status, workers, load, latency percentiles, queue depth), batch jobs and recent
    failures; every owner's with an admin key."""
    overview = await services(request).status.overview(who.scope)
    return {"owner": who.owner, "admin": who.admin, **overview}


@router.get("/v1/status/me", tags=["status"], responses=errors(401))
async def me(who: Viewer = Depends(viewer)) -> dict[str, Any]:
    """The key's owner and whether it is an admin key."""
    return {"owner": who.owner, "admin": who.admin}


@router.get("/v1/status/endpoints/{endpoint_id}", tags=["status"], responses=errors(401, 404))
async def endpoint_status(endpoint_id: str, request: Request, who: Viewer = Depends(viewer)) -> dict[str, Any]:
    """One endpoint in full: status history, cold-start timelines, failures with tracebacks, async tasks with
    their queue position, creation logs."""
    found = await services(request).status.endpoint(who.scope, endpoint_id)
    if found is None:
        raise NotFound(f"no endpoint with id {endpoint_id!r}")
    return found


@router.get("/v1/status/batch-jobs/{job_id}", tags=["status"], responses=errors(401, 404))
async def batch_job_status(job_id: str, request: Request, who: Viewer = Depends(viewer),
                           items: int = Query(100, ge=0, le=1000)) -> dict[str, Any]:
    """One batch job with its progress and its most recent items."""
    found = await services(request).status.batch_job(who.scope, job_id, items)
    if found is None:
        raise NotFound(f"no batch job with id {job_id!r}")
    return found
