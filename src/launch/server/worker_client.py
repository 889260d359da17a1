"""The gateway's HTTP client for workers: pooled keep-alive connections, one hop, no retries here."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class WorkerReply:
    status: int
    content_type: str
    body: bytes


class WorkerUnreachable(Exception):
    """The worker could not be reached or broke the connection (it may have died)."""


class WorkerClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def post(self, address: str, path: str, body: bytes, timeout: float) -> WorkerReply:
        try:
            async with self._client().post(
                address + path, data=body, headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                payload = await response.read()
                return WorkerReply(response.status, response.headers.get("Content-Type", ""), payload)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise WorkerUnreachable(f"worker at {address} is unreachable: {exc!r}") from exc

    async def healthy(self, address: str, timeout: float = 2.0) -> bool:
        try:
            async with self._client().get(
                address + "/healthz", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
