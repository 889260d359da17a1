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
# the page loads nothing from elsewhere and cannot be framed: an injected string could do little even if the
# page ever rendered one as markup (it never does: data is set as text)
_PAGE = {**_NO_CACHE, "X-Frame-Options": "DENY", "Content-Security-Policy": (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")}


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html", headers=_PAGE)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard/static/{name}")
async def static(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in _TYPES:
        raise NotFound(f"no dashboard file {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)
