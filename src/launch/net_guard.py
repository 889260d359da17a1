"""Guarded outbound fetches by the gateway (``url`` inputs, callbacks): allowed schemes, allowed addresses, size cap.

The decision (`check_address`, `check_url`) is pure and unit-tested; `fetch` applies it to every resolved
address, to the address actually connected (no DNS-rebinding bypass) and to every redirect hop.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class FetchPolicy:
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    allow_private: bool = False
    max_bytes: int = 100 * 1024 * 1024
    timeout: float = 30.0
    max_redirects: int = 5


class FetchDenied(Exception):
    """The operator's policy forbids this URL or address."""


def check_address(ip: str, policy: FetchPolicy) -> None:
    """Raise ``FetchDenied`` unless ``ip`` may be reached under ``policy``."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if policy.allow_private:
        return
    # not is_global covers private, loopback, link-local, shared (100.64/10), documentation, benchmarking...
    internal = not addr.is_global or addr.is_multicast or addr.is_reserved or addr.is_unspecified
    if internal:
        raise FetchDenied(f"address {addr} is internal; the server does not allow fetching it (the operator "
                          "can allow internal addresses with `launch server --allow-private-fetch`)")


def check_url(url: str, policy: FetchPolicy) -> tuple[str, int]:
    """Validate scheme and host of ``url``; returns (host, port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in policy.allowed_schemes:
        allowed = ", ".join(sorted(policy.allowed_schemes))
        raise FetchDenied(f"URL scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
    if not parts.hostname:
        raise FetchDenied(f"URL {url!r} has no host")
    return parts.hostname, parts.port or (443 if scheme == "https" else 80)


async def resolve_checked(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """The addresses of ``host`` (itself for an IP literal, else resolved off the loop), each checked under
    ``policy``: connect only to these, and a name that changes its answer cannot slip through. Raises
    ``FetchDenied`` for an internal address, ``socket.gaierror`` for a name that does not resolve."""
    import asyncio

    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        check_address(address, policy)
    return addresses


def _resolve_and_check(host: str, port: int, policy: FetchPolicy) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchDenied(f"cannot resolve host {host!r}: {exc}") from None
    for info in infos:
        check_address(str(info[4][0]), policy)


def _check_peer(response: httpx.Response, policy: FetchPolicy) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        check_address(str(peer[0]), policy)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """GET ``url`` under ``policy`` and return its body (raises ``FetchDenied`` or ``httpx.HTTPError``)."""
    import httpx  # imported on first use: workers that never fetch start faster

    with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            host, port = check_url(url, policy)
            _resolve_and_check(host, port, policy)
            with client.stream("GET", url) as response:
                _check_peer(response, policy)
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                response.raise_for_status()
                return _read_capped(response, policy.max_bytes)
    raise FetchDenied(f"too many redirects (more than {policy.max_redirects})")


async def fetch_async(url: str, policy: FetchPolicy) -> bytes:
    """``fetch`` for the event loop: the same checks, name resolution off the loop, a non-blocking client."""
    import httpx

    async with httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            host, port = check_url(url, policy)
            try:
                await resolve_checked(host, port, policy)
            except socket.gaierror as exc:
                raise FetchDenied(f"cannot resolve host {host!r}: {exc}") from None
            async with client.stream("GET", url) as response:
                _check_peer(response, policy)
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                response.raise_for_status()
                _check_declared(response, policy.max_bytes)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise FetchDenied(f"input is over the limit of {policy.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
    raise FetchDenied(f"too many redirects (more than {policy.max_redirects})")


def _check_declared(response: httpx.Response, limit: int) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FetchDenied(f"input is {declared} bytes, over the limit of {limit}")


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    _check_declared(response, limit)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise FetchDenied(f"input is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
