"""The web dashboard: a small bundled page (no CDN, works offline) at ``/dashboard`` that logs in with an API
key (kept in the tab's sessionStorage, sent as a bearer token) and polls ``/v1/status`` every two seconds."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from launch.server.domain.errors import NotFound

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[1] / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
_NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard/static/{name}")
async def static(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in _TYPES:
        raise NotFound(f"no dashboard file {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)
