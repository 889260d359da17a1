"""One exception tree for the domain; ``launch.server.api.errors`` maps it to HTTP in one place.

    LaunchError
     ├── InvalidRequest      400/422  the user's input breaks a rule
     ├── Unauthenticated     401      missing or unknown API key
     ├── NotFound            404      no such resource for this owner
     ├── AlreadyExists       409      the name is taken
     ├── Conflict            409      the resource is in a state that forbids the action
     ├── PayloadTooLarge     413      over a configured size limit
     ├── TooManyRequests     429      the endpoint's queue is full; retry later
     ├── WorkerFailed        502      the worker died during a sync prediction (it may have run)
     ├── Unavailable         503      nothing can serve it right now; safe to retry
     ├── PredictionTimeout   504      a sync prediction ran past its time limit
     └── InsufficientStorage 507      the disk is full; nothing was stored
"""

from __future__ import annotations


class LaunchError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(LaunchError):
    status_code = 422


class Unauthenticated(LaunchError):
    status_code = 401


class NotFound(LaunchError):
    status_code = 404


class AlreadyExists(LaunchError):
    status_code = 409


class Conflict(LaunchError):
    status_code = 409


class PayloadTooLarge(LaunchError):
    status_code = 413


class TooManyRequests(LaunchError):
    """``retry_after``: the seconds the client should wait (sent as ``Retry-After``)."""

    status_code = 429

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class WorkerFailed(LaunchError):
    status_code = 502


class Unavailable(LaunchError):
    status_code = 503


class InsufficientStorage(LaunchError):
    status_code = 507


class PredictionTimeout(LaunchError):
    status_code = 504


class Forbidden(LaunchError):
    """Authenticated, but this key may not do that (an operator view asked for with a user's key)."""

    status_code = 403
