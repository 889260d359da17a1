"""Which methods a path allows (the ``Allow`` header of a 405), from every route of the app.

Starlette names only the methods of the first route whose path matched; a path served by several routes
(``GET`` and ``POST /v1/model-bundles``) must list them all, as the OpenAPI document does.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request

CATCH_ALL = "catch_all"  # the name of routes that answer unknown paths (they allow nothing)


def allowed_methods(request: Request) -> list[str]:
    path = request.scope["path"]
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.name != CATCH_ALL and route.path_regex.match(path):
            allowed |= route.methods
    return sorted(allowed)


def not_allowed_detail(request: Request, allowed: list[str]) -> str:
    return f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
