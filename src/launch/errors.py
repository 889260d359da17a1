"""SDK exceptions.

    LaunchClientError
     └── APIError          the server answered with an error status (``status_code``, ``detail``)
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
