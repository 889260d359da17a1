"""Signed, expiring tokens for URLs that carry their own authorisation (uploads, result downloads)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, purpose: str, key: str, ttl_seconds: int) -> str:
    """A token naming ``key`` for ``purpose`` until now + ``ttl_seconds``."""
    expires = int(time.time()) + ttl_seconds
    payload = f"{purpose}\n{key}\n{expires}".encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:20]
    return f"{_b64(key.encode())}.{expires}.{_b64(mac)}"


def verify(secret: bytes, purpose: str, token: str) -> str | None:
    """The key inside a valid, unexpired token for ``purpose``; None otherwise."""
    try:
        key_part, expires_text, mac_part = token.split(".")
        key = _unb64(key_part).decode()
        expires = int(expires_text)
        mac = _unb64(mac_part)
    except (ValueError, UnicodeDecodeError):
        return None
    payload = f"{purpose}\n{key}\n{expires}".encode()
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:20]
    if not hmac.compare_digest(mac, expected) or expires < time.time():
        return None
    return key
