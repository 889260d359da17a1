"""SDK exceptions.

    LaunchClientError
     ├── APIError          the server answered with an error status (``status_code``, ``detail``)
     ├── NoLaunchServer    nothing answers at the address, or what answers is not a Launch server
     ├── EndpointFailed    ``wait_until_ready``: the endpoint failed to start (``reason``)
     └── StreamError       a stream ended in failure (``traceback`` of the predict function, or ``detail``)
"""

from __future__ import annotations


class LaunchClientError(Exception):
    """Base of every exception the SDK raises on purpose."""


class APIError(LaunchClientError):
    """The server answered ``status_code`` >= 400; ``detail`` is its explanation."""

    def __init__(self, method: str, url: str, status_code: int, detail: str) -> None:
        super().__init__(f"{method} {url} failed with {status_code}: {detail}")
        self.method = method
        self.url = url
        self.status_code = status_code
        self.detail = detail


class NoLaunchServer(LaunchClientError):
    """Nothing answers at the client's address, or what answers there is not a Launch server."""


class EndpointFailed(LaunchClientError):
    """The endpoint failed to start (``UPDATE_FAILED``); ``reason`` is the server's explanation."""

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"endpoint {name!r} failed to start: {reason or 'no reason given'}")
        self.name = name
        self.reason = reason


class StreamError(LaunchClientError):
    """A streaming prediction failed after it started: the predict function raised (``traceback``), or the
    platform could not finish it (``detail``), or the connection was cut before the final event."""

    def __init__(self, message: str, traceback: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.detail = detail
