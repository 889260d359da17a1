"""The one place where exceptions become HTTP responses: always JSON with a ``detail``."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from launch.server.api.methods import allowed_methods, not_allowed_detail
from launch.server.domain.errors import (
    InsufficientStorage,
    LaunchError,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("launch.api")


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def storage_error(exc: Exception) -> LaunchError | None:
    """The domain error for a failure of the database or the disk (nothing was committed: safe to retry)."""
    if isinstance(exc, DBAPIError):
        if "disk is full" in str(exc.orig) or "No space left" in str(exc.orig):
            return InsufficientStorage("the server's disk is full, nothing was stored; retry later")
        return Unavailable(f"the database is unavailable, nothing was changed; retry later ({type(exc.orig).__name__})")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return InsufficientStorage("the server's disk is full, nothing was stored; retry later")
    return None


def error_headers(exc: LaunchError, bearer: bool = False) -> dict[str, str] | None:
    """The headers an error answer carries: how to authenticate (401), when to come back (429). A client that
    sent a bearer token is challenged for one: a browser answers a Basic challenge to a script's request (the
    dashboard's) with a login prompt that never comes back."""
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": 'Bearer realm="launch"' if bearer else 'Basic realm="launch"'}
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": str(exc.retry_after)}
    return None


def _sent_bearer(request: Request) -> bool:
    return request.headers.get("authorization", "").lower().startswith("bearer")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LaunchError)
    async def _launch_error(request: Request, exc: LaunchError) -> ORJSONResponse:
        headers = error_headers(exc, _sent_bearer(request))
        return ORJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        return ORJSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> ORJSONResponse:
        if exc.status_code == 405:  # every route of the path counts, not only the first that matched
            allowed = allowed_methods(request)
            return ORJSONResponse({"detail": not_allowed_detail(request, allowed)}, status_code=405,
                                  headers={"Allow": ", ".join(allowed)})
        return ORJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> ORJSONResponse:
        # the client went away (or BodySizeLimit already answered 413): nobody reads this response
        return ORJSONResponse({"detail": "client disconnected"}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        mapped = storage_error(exc)
        if mapped is not None:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return ORJSONResponse({"detail": mapped.detail}, status_code=mapped.status_code)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return ORJSONResponse({"detail": f"internal server error: {type(exc).__name__}"}, status_code=500)
