"""A small Starlette app served by a command bundle: the user's own HTTP server, run by uvicorn."""

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

GREETING = Path(__file__).with_name("greeting.txt").read_text().strip()


async def predict(request: Request) -> JSONResponse:
    if request.headers.get("content-type") == "application/octet-stream":
        return JSONResponse({"bytes": len(await request.body())})
    args = await request.json()
    if args.get("fail"):
        return JSONResponse({"error": "asked to fail"}, status_code=500)
    return JSONResponse({"greeting": GREETING, "sum": args.get("a", 0) + args.get("b", 0),
                         "pid_ns_port": os.environ.get("PORT"), "mode": os.environ.get("APP_MODE")})


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/healthz", health)])
