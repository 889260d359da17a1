"""The outbound fetch policy: which addresses and URLs a worker may fetch ``url`` inputs from."""

from __future__ import annotations

import pytest

from launch.net_guard import FetchDenied, FetchPolicy, check_address, check_url, fetch

STRICT = FetchPolicy()
OPEN = FetchPolicy(allow_private=True)

INTERNAL = [
    "127.0.0.1", "127.1.2.3", "::1",                      # loopback
    "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1",  # private
    "169.254.169.254", "fe80::1",                         # link-local (cloud metadata!)
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",  # IPv4-mapped IPv6
    "224.0.0.1", "239.255.255.250", "ff02::1",            # multicast
    "0.0.0.0", "::",                                      # unspecified
    "240.0.0.1",                                          # reserved
]
# RFC 6598 shared address space (100.64.0.0/10): not "private" to Python's ipaddress, yet internal; Alibaba
# Cloud serves instance metadata and credentials at 100.100.100.200
SHARED = ["100.64.0.1", "100.100.100.200", "::ffff:100.100.100.200"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("ip", INTERNAL)
def test_internal_addresses_are_denied(ip: str) -> None:
    with pytest.raises(FetchDenied, match="internal"):
        check_address(ip, STRICT)


@pytest.mark.parametrize("ip", SHARED)
def test_shared_address_space_is_denied(ip: str) -> None:
    with pytest.raises(FetchDenied, match="internal"):
        check_address(ip, STRICT)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_allowed(ip: str) -> None:
    check_address(ip, STRICT)


@pytest.mark.parametrize("ip", INTERNAL + PUBLIC)
def test_allow_private_opens_everything(ip: str) -> None:
    check_address(ip, OPEN)


@pytest.mark.parametrize(("url", "host", "port"), [
    ("http://example.com/a.png", "example.com", 80),
    ("https://example.com/a.png", "example.com", 443),
    ("http://example.com:8080/x", "example.com", 8080),
    ("HTTPS://Example.COM/x", "example.com", 443),
    ("http://[2606:4700::1]/x", "2606:4700::1", 80),
])
def test_allowed_urls(url: str, host: str, port: int) -> None:
    assert check_url(url, STRICT) == (host, port)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/",
                                 "data:text/plain,hi", "/etc/passwd", "example.com/x", "javascript:alert(1)"])
def test_disallowed_schemes(url: str) -> None:
    with pytest.raises(FetchDenied, match="not allowed"):
        check_url(url, STRICT)


def test_allow_private_does_not_open_schemes() -> None:
    with pytest.raises(FetchDenied, match="scheme 'file' is not allowed"):
        check_url("file:///etc/passwd", OPEN)


def test_operator_can_restrict_schemes() -> None:
    https_only = FetchPolicy(allowed_schemes=frozenset({"https"}))
    assert check_url("https://example.com/", https_only) == ("example.com", 443)
    with pytest.raises(FetchDenied, match="allowed: https"):
        check_url("http://example.com/", https_only)


@pytest.mark.parametrize("url", ["http://", "http:///path", "https://:80/"])
def test_url_without_host_is_denied(url: str) -> None:
    with pytest.raises(FetchDenied, match="no host"):
        check_url(url, STRICT)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/",
                                 "http://169.254.169.254/latest/meta-data/", "http://0x7f000001:9/"])
def test_fetch_refuses_internal_hosts_before_connecting(url: str) -> None:
    # port 9 (discard) has no listener: a connection attempt would raise httpx.ConnectError, not FetchDenied
    with pytest.raises(FetchDenied):
        fetch(url, FetchPolicy(timeout=2))


def test_fetch_refuses_file_scheme() -> None:
    with pytest.raises(FetchDenied, match="not allowed"):
        fetch("file:///etc/passwd", STRICT)
