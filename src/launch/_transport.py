"""HTTP to the Launch server (httpx): base URL, API key auth, JSON, bounded retries.

Retries: connection failures before a request was sent, and 429/503 answers, are retried with backoff for
every request; the server answers those only when it did nothing (no task accepted, no prediction started).
A ``Retry-After`` header (seconds) sets the wait instead of the backoff.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from launch.errors import APIError

RETRY_STATUSES = (429, 503)  # the server answers these only when it did nothing
DEFAULT_TIMEOUT = 120.0
MAX_RETRY_AFTER = 60.0


class Transport:
    def __init__(self, base_url: str, api_key: str, timeout: float = DEFAULT_TIMEOUT, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._client = httpx.Client(
            base_url=self.base_url, auth=(api_key, ""), timeout=timeout, trust_env=False,
            headers={"User-Agent": "launch-python"},
        )

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                content: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        response = self._send(method, path, json=json, params=params, content=content, headers=headers)
        if response.status_code >= 400:
            raise APIError(method, str(response.url), response.status_code, _detail(response))
        return response.json() if response.content else None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return response
                wait = retry_after(response)
                if wait is not None:
                    time.sleep(wait)
                    continue
            time.sleep(delay)
            delay = min(delay * 3, 10.0)
        raise AssertionError("unreachable")

    def put_bytes(self, url: str, data: bytes) -> None:
        """PUT raw bytes to a signed URL (authorised by the URL itself)."""
        response = httpx.put(url, content=data, timeout=self._client.timeout, trust_env=False)
        if response.status_code >= 400:
            raise APIError("PUT", url, response.status_code, _detail(response))

    def get_bytes(self, url: str) -> bytes:
        response = httpx.get(url, timeout=self._client.timeout, trust_env=False, follow_redirects=True)
        if response.status_code >= 400:
            raise APIError("GET", url, response.status_code, _detail(response))
        return response.content

    def close(self) -> None:
        self._client.close()


def retry_after(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` in seconds (capped at a minute), or None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text
