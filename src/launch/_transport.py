"""HTTP to the Launch server (httpx): base URL, API key auth, JSON, bounded retries.

Retries: connection failures before a request was sent, and 429/503 answers, are retried with backoff for
every request; the server answers those only when it did nothing (no task accepted, no prediction started).
Until the server has answered once, a refused connection is not retried: it is a wrong address far more
often than a restarting server, and the user should hear so at once (``NoLaunchServer``).
A ``Retry-After`` header (seconds) sets the wait instead of the backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx

from launch.errors import APIError, NoLaunchServer

RETRY_STATUSES = (429, 503)  # the server answers these only when it did nothing
DEFAULT_TIMEOUT = 120.0
MAX_RETRY_AFTER = 60.0
CONNECT_TIMEOUT = 5.0


class Transport:
    def __init__(self, base_url: str, api_key: str, timeout: float = DEFAULT_TIMEOUT, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.reached = False  # the server has answered at least once
        self._client = httpx.Client(
            base_url=self.base_url, auth=(api_key, ""), timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            trust_env=False, headers={"User-Agent": "launch-python"},
        )

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                content: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        response = self._send(method, path, json=json, params=params, content=content, headers=headers)
        if response.status_code >= 400:
            if not _is_json(response):  # every answer of a Launch server is JSON
                raise NoLaunchServer(
                    f"no Launch server at {self.base_url}: {method} {path} answered {response.status_code} "
                    f"{response.headers.get('content-type', 'without a content type')}; check the endpoint= "
                    "argument or LAUNCH_ENDPOINT")
            self.reached = True
            raise APIError(method, str(response.url), response.status_code, _detail(response))
        self.reached = True
        return response.json() if response.content else None

    def _send(self, method: str, path: str, stream: bool = False, **kwargs: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                request = self._client.build_request(method, path, **kwargs)
                response = self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not self.reached:
                    raise NoLaunchServer(
                        f"no Launch server at {self.base_url} ({type(exc).__name__}: {exc}); is `launch server` "
                        "running there? Check the endpoint= argument or LAUNCH_ENDPOINT") from None
                if last:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return response
                wait = retry_after(response)
                response.close()
                if wait is not None:
                    time.sleep(wait)
                    continue
            time.sleep(delay)
            delay = min(delay * 3, 10.0)
        raise AssertionError("unreachable")

    def stream_lines(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> Generator[str, None, None]:
        """The response's lines as they arrive (retried like ``request`` until the response starts); closing
        the iterator closes the connection."""
        response = self._send(method, path, stream=True, json=json, params=params, headers=headers)
        self.reached = True
        try:
            if response.status_code >= 400:
                response.read()
                raise APIError(method, str(response.url), response.status_code, _detail(response))
            yield from response.iter_lines()
        finally:
            response.close()

    async def astream_lines(self, method: str, path: str, *, json: Any = None,
                            params: dict[str, Any] | None = None) -> AsyncGenerator[str, None]:
        """``stream_lines`` for asyncio (its own connection; 429/503 retried the same way)."""
        async with httpx.AsyncClient(base_url=self.base_url, auth=self._client.auth, timeout=self._client.timeout,
                                     trust_env=False, headers=self._client.headers) as client:
            delay = 0.5
            for attempt in range(self.retries + 1):
                async with client.stream(method, path, json=json, params=params) as response:
                    if response.status_code in RETRY_STATUSES and attempt < self.retries:
                        await asyncio.sleep(delay)
                        delay = min(delay * 3, 10.0)
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise APIError(method, str(response.url), response.status_code, _detail(response))
                    async for line in response.aiter_lines():
                        yield line
                    return

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


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text
