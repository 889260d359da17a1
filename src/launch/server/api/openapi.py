"""What the OpenAPI document says beyond the routes themselves: one error schema, the status codes each route
can answer, the security schemes, and Swagger UI served from the installed package (no CDN)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.models import HTTPBase
from fastapi.security.base import SecurityBase
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse


class ErrorDetail(BaseModel):
    """Every error answer: a human-readable reason."""

    detail: str


_DESCRIPTIONS = {
    400: "The client went away before its request was read",
    401: "Missing or unknown API key, or an invalid or expired signed URL",
    404: "No such resource (of this owner)",
    405: "Method not allowed (the Allow header lists the allowed ones)",
    408: "A sync prediction ran past the server's time limit (legacy API: final, not retried)",
    409: "The name is taken, or the resource's state forbids the action",
    413: "The request body is over the limit",
    422: "The request breaks a rule (the detail says which)",
    429: "The endpoint's queue is full; retry later",
    502: "The worker died during the prediction (it may have run)",
    503: "Nothing can serve it right now; nothing ran (safe to retry)",
    504: "The prediction ran past the server's time limit",
    507: "The server's disk is full; nothing was stored",
}
# What any route may answer: its body is refused or the storage fails under it.
COMMON = (413, 422, 503, 507)


_HEADERS = {
    401: {"WWW-Authenticate": {"description": "The scheme to authenticate with", "schema": {"type": "string"}}},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route answering ``codes`` (and the common ones) with ``ErrorDetail``."""
    return {code: {"model": ErrorDetail, "description": _DESCRIPTIONS[code],
                   **({"headers": _HEADERS[code]} if code in _HEADERS else {})}
            for code in sorted({*codes, *COMMON})}


class DocumentedScheme(SecurityBase):
    """A security scheme for the document only: ``api.auth`` reads the header itself (both schemes on
    every route, and the basic password is ignored, which FastAPI's own classes would not allow)."""

    def __init__(self, scheme: str, name: str, description: str) -> None:
        self.model = HTTPBase(scheme=scheme, description=description)
        self.scheme_name = name

    async def __call__(self) -> None:
        return None


basic_auth = DocumentedScheme("basic", "apiKeyBasic", "The API key as user name, any password (scale-launch).")
bearer_auth = DocumentedScheme("bearer", "apiKeyBearer", "The API key as bearer token.")


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package's files (works on an offline host)."""
    import swagger_ui_bundle

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Launch API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")
