"""What the gateway sends a worker for one request. Workers have no network of their own (see the sandbox),
so the gateway fetches ``url`` inputs under the operator's fetch policy and sends their bytes along."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from launch import wire
from launch.net_guard import FetchDenied, FetchPolicy, fetch_async


@dataclass(frozen=True)
class WorkerRequest:
    """A frame ready for a worker, or (``failure`` set) the reason the request fails without running."""

    kind: int = wire.PREDICT
    payload: bytes = b""
    failure: str | None = None


async def prepare(request: dict[str, Any], policy: FetchPolicy, raw: bytes | None = None) -> WorkerRequest:
    """The frame for ``request``: plain JSON, or JSON plus the fetched bytes of its ``url`` input. ``raw``:
    the client's body that ``request`` was validated from, passed through as it is when it has no url (the
    worker applies the same defaults, and ignores other keys): a large body is not serialised again."""
    url = request.get("url")
    if not url:
        return WorkerRequest(wire.PREDICT, raw if raw is not None else orjson.dumps(request))
    try:
        data = await fetch_async(url, policy)
    except FetchDenied as exc:
        return WorkerRequest(failure=f"the url input was not fetched: {exc}")
    except httpx.HTTPError as exc:
        return WorkerRequest(failure=f"fetching the url input {url!r} failed: {type(exc).__name__}: {exc}")
    head = {k: v for k, v in request.items() if k != "url"}
    return WorkerRequest(wire.PREDICT_INPUT, wire.pack_input(orjson.dumps(head), data))


def with_request_id(body: bytes, request_id: str) -> bytes:
    """A request body (already validated as a JSON object) with its ``request_id`` added in front, without
    parsing and serialising it again: the worker's log lines for this request carry the id. Request ids are
    plain (letters, digits, ``._:-``: the fast path's and uuids), so they need no JSON escaping."""
    return b'{"request_id":"' + request_id.encode() + b'",' + body[body.index(b"{") + 1:]


def failure_body(reason: str) -> bytes:
    """The JSON result frame body of a request that failed before it reached a worker."""
    return orjson.dumps({"status": "FAILURE", "traceback": reason})
