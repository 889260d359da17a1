"""Request bodies parsed as strict JSON (orjson), for every FastAPI route.

Python's ``json`` accepts what JSON does not: ``NaN``/``Infinity`` literals and lone UTF-16 surrogates
(``"\\ud800"``), which would then be saved and break every later answer that contains them. orjson refuses
both (FastAPI turns its error into a 422), so nothing that cannot be sent back is ever stored.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
