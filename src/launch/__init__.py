"""Launch: turn Python functions into production model endpoints on your own machines.

Public SDK names; see ``launch.model_endpoint`` for endpoints, requests, responses and futures.
"""

from launch.client import LaunchClient
from launch.errors import APIError, LaunchClientError
from launch.model_bundle import ModelBundle
from launch.model_endpoint import (
    AsyncEndpoint,
    AsyncEndpointBatchResponse,
    Endpoint,
    EndpointRequest,
    EndpointResponse,
    EndpointResponseFuture,
    ModelEndpoint,
    SyncEndpoint,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncEndpoint",
    "AsyncEndpointBatchResponse",
    "Endpoint",
    "EndpointRequest",
    "EndpointResponse",
    "EndpointResponseFuture",
    "LaunchClient",
    "LaunchClientError",
    "ModelBundle",
    "ModelEndpoint",
    "SyncEndpoint",
    "__version__",
]
