"""Launch: turn Python functions into production model endpoints on your own machines.

Public SDK names; see ``launch.model_endpoint`` for endpoints, requests, responses and futures. They are
imported on first use, so worker processes (which import ``launch.worker``) start without the SDK's HTTP
client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launch.client import LaunchClient
    from launch.errors import APIError, EndpointFailed, LaunchClientError, NoLaunchServer, StreamError
    from launch.model_bundle import ModelBundle
    from launch.model_endpoint import (
        AsyncEndpoint,
        AsyncEndpointBatchResponse,
        Endpoint,
        EndpointRequest,
        EndpointResponse,
        EndpointResponseFuture,
        ModelEndpoint,
        StreamingEndpoint,
        SyncEndpoint,
    )

__version__ = "0.1.0"

_HOMES = {
    "LaunchClient": "launch.client",
    "APIError": "launch.errors",
    "LaunchClientError": "launch.errors",
    "NoLaunchServer": "launch.errors",
    "EndpointFailed": "launch.errors",
    "StreamError": "launch.errors",
    "ModelBundle": "launch.model_bundle",
    **{name: "launch.model_endpoint" for name in (
        "AsyncEndpoint", "AsyncEndpointBatchResponse", "Endpoint", "EndpointRequest", "EndpointResponse",
        "EndpointResponseFuture", "ModelEndpoint", "StreamingEndpoint", "SyncEndpoint",
    )},
}

__all__ = [
    "APIError",
    "AsyncEndpoint",
    "AsyncEndpointBatchResponse",
    "Endpoint",
    "EndpointFailed",
    "EndpointRequest",
    "EndpointResponse",
    "EndpointResponseFuture",
    "LaunchClient",
    "LaunchClientError",
    "ModelBundle",
    "ModelEndpoint",
    "NoLaunchServer",
    "StreamError",
    "StreamingEndpoint",
    "SyncEndpoint",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'launch' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
