"""Owners and their API keys. Keys are random tokens stored as HMAC-SHA256 digests (keyed by the server's
secret): a fast digest is right for high-entropy tokens, and lookups are cached so auth costs no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid

import sqlalchemy as sa

from launch.server.domain.errors import InvalidRequest, Unauthenticated
from launch.stores.database import Database
from launch.stores.schema import api_keys

KEY_PREFIX = "lk_"
_OWNER = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def validate_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise InvalidRequest("user names are 1-128 characters of letters, digits, '.', '_', '@' and '-'")
    return owner


def insert_key_statement(owner: str, digest: str) -> sa.Insert:
    return api_keys.insert().values(
        id=uuid.uuid4().hex, owner=validate_owner(owner), key_digest=digest, created_at=time.time()
    )


class ApiKeys:
    """Authenticates requests: key → owner, from memory after the first lookup."""

    NEGATIVE_TTL = 2.0

    def __init__(self, db: Database, secret: bytes) -> None:
        self.db = db
        self.secret = secret
        self._owners: dict[str, str] = {}
        self._unknown: dict[str, float] = {}

    async def authenticate(self, key: str | None) -> str:
        if not key:
            raise Unauthenticated("missing API key: send it as HTTP basic auth user name or a bearer token")
        owner = self._owners.get(key)
        if owner is not None:
            return owner
        if self._unknown.get(key, 0.0) > time.monotonic():
            raise Unauthenticated("invalid API key")
        digest = key_digest(self.secret, key)
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys.c.owner).where(
                        api_keys.c.key_digest == digest, api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            if len(self._unknown) > 10000:
                self._unknown.clear()
            self._unknown[key] = time.monotonic() + self.NEGATIVE_TTL
            raise Unauthenticated("invalid API key")
        self._owners[key] = row.owner
        return str(row.owner)

    def forget(self) -> None:
        """Keys were created or revoked elsewhere: look every key up again."""
        self._owners.clear()
        self._unknown.clear()

    async def create(self, owner: str) -> str:
        key = new_api_key()
        statement = insert_key_statement(owner, key_digest(self.secret, key))
        await self.db.write(lambda conn: conn.execute(statement))
        return key
