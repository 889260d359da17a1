"""Credentials the server must use later but never show, sealed at rest: a task's callback auth (a basic-auth
password, a client certificate's private key) is stored encrypted with AES-GCM under a key derived from the
server's secret, so the database alone (a backup, a replica, a leaked file) does not reveal them.

A sealed field is ``{"sealed": "v1.<base64url(nonce + ciphertext)>"}`` in place of its plain text (the other
fields of an auth object stay readable); the gateways of one deployment share the secret, so any of them opens
what another sealed. An endpoint's ``default_callback_auth`` is sealed the same way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1."


class SealError(ValueError):
    """A sealed value that this server's secret does not open (another deployment's, or altered)."""


class Sealer:
    def __init__(self, secret: bytes) -> None:
        key = hmac.new(secret, b"launch:sealed-credentials", hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, value: Any) -> dict[str, str]:
        nonce = os.urandom(12)
        token = nonce + self._aead.encrypt(nonce, orjson.dumps(value), _VERSION.encode())
        return {"sealed": _VERSION + base64.urlsafe_b64encode(token).decode().rstrip("=")}

    def open(self, value: Any) -> Any:
        """The plain value of ``seal``'s output; anything else (stored before sealing existed) as it is."""
        if not is_sealed(value):
            return value
        text = value["sealed"].removeprefix(_VERSION)
        try:
            token = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return orjson.loads(self._aead.decrypt(token[:12], token[12:], _VERSION.encode()))
        except (InvalidTag, ValueError) as exc:
            raise SealError("a sealed credential does not open with this server's secret") from exc

    def seal_auth(self, auth: Any) -> Any:
        """A callback auth object with its secret fields (``password``, ``key``) sealed; the rest (``kind``,
        ``username``, ``cert``) stays readable. Anything but an object is left as it is (validation says why)."""
        if not isinstance(auth, dict):
            return auth
        return {k: self.seal(v) if k in SECRET_FIELDS and isinstance(v, str) else v for k, v in auth.items()}

    def open_auth(self, auth: Any) -> Any:
        """``seal_auth`` undone (plain fields, stored before sealing existed, pass as they are)."""
        if not isinstance(auth, dict):
            return auth
        return {k: self.open(v) if k in SECRET_FIELDS else v for k, v in auth.items()}

    def seal_callback(self, callback: dict[str, Any] | None) -> dict[str, Any] | None:
        """A callback (``{"url", "auth"}``) as stored: its auth's secrets sealed."""
        if callback is None or callback.get("auth") is None:
            return callback
        return {**callback, "auth": self.seal_auth(callback["auth"])}

    def callback_auth(self, callback: dict[str, Any]) -> dict[str, str] | None:
        """The plain auth of a stored callback."""
        auth = callback.get("auth")
        return None if auth is None else self.open_auth(auth)

    def seal_endpoint_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        """An endpoint's extra settings as stored: ``default_callback_auth``'s secrets sealed."""
        if "default_callback_auth" not in extra:
            return extra
        return {**extra, "default_callback_auth": self.seal_auth(extra["default_callback_auth"])}

    def open_endpoint_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        if "default_callback_auth" not in extra:
            return extra
        return {**extra, "default_callback_auth": self.open_auth(extra["default_callback_auth"])}


SECRET_FIELDS = frozenset({"password", "key"})  # a basic-auth password, a client certificate's private key


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed"} and str(value["sealed"]).startswith(_VERSION)
