"""Owners and their API keys. Keys are random tokens stored as HMAC-SHA256 digests (keyed by the server's
secret): a fast digest is right for high-entropy tokens, and lookups are cached so auth costs no I/O.

Keys are created and revoked by ``launch api-keys`` from another process, straight in the database. The
server notices through ``KeyChanges`` (polled off the request path) and drops revoked keys from its cache
within ``recheck_seconds``; last-used times are kept in memory and written in one batch per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import sqlalchemy as sa

from launch.server.domain.errors import InvalidRequest, NotFound, Unauthenticated
from launch.stores.database import Database
from launch.stores.schema import api_keys

log = logging.getLogger("launch.keys")
KEY_PREFIX = "lk_"
SHOWN_CHARS = 8  # random characters kept in clear to name a key (48 of its 256 bits)
MIN_ID_PREFIX = 6
_OWNER = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def shown_prefix(key: str) -> str:
    """What lists show of a key: enough to tell keys apart, far too little to use."""
    return key[: len(KEY_PREFIX) + SHOWN_CHARS]


def validate_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise InvalidRequest("user names are 1-128 characters of letters, digits, '.', '_', '@' and '-'")
    return owner


def insert_key_statement(owner: str, digest: str, prefix: str | None = None, admin: bool = False) -> sa.Insert:
    return api_keys.insert().values(
        id=uuid.uuid4().hex, owner=validate_owner(owner), key_digest=digest, created_at=time.time(),
        key_prefix=prefix, admin=admin,
    )


@dataclass(frozen=True)
class KeyRecord:
    """A key as ``launch api-keys list`` shows it (never the key itself)."""

    id: str
    owner: str
    prefix: str | None
    digest: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


def list_keys(conn: sa.Connection, owner: str | None = None) -> list[KeyRecord]:
    query = sa.select(api_keys).order_by(api_keys.c.created_at)
    if owner is not None:
        query = query.where(api_keys.c.owner == owner)
    return [
        KeyRecord(id=r.id, owner=r.owner, prefix=r.key_prefix, digest=r.key_digest, created_at=r.created_at,
                  last_used_at=r.last_used_at, revoked_at=r.revoked_at)
        for r in conn.execute(query)
    ]


def find_key(records: Sequence[KeyRecord], ref: str, digest: str) -> KeyRecord:
    """The one key ``ref`` names: the full key (``digest`` is its digest), the prefix ``list`` shows, or
    the start of its id (at least ``MIN_ID_PREFIX`` characters). Raises NotFound or InvalidRequest."""
    for record in records:
        if record.digest == digest:
            return record
    if ref.startswith(KEY_PREFIX) and len(ref) > len(KEY_PREFIX) + SHOWN_CHARS:
        raise NotFound("no key matches that API key")
    matches = [r for r in records if r.prefix == ref]
    if not matches and len(ref) >= MIN_ID_PREFIX:
        matches = [r for r in records if r.id.startswith(ref)]
    if not matches:
        raise NotFound(f"no key has the id or prefix {ref!r} (ids need at least {MIN_ID_PREFIX} characters)")
    if len(matches) > 1:
        ids = ", ".join(r.id for r in matches)
        raise InvalidRequest(f"{ref!r} names {len(matches)} keys ({ids}); give more of the id")
    return matches[0]


def revoke_key(conn: sa.Connection, secret: bytes, ref: str) -> KeyRecord:
    """Revoke the key ``ref`` names (see ``find_key``); revoking twice keeps the first time. Returns it."""
    record = find_key(list_keys(conn), ref, key_digest(secret, ref))
    if record.revoked_at is None:
        now = time.time()
        conn.execute(api_keys.update().where(api_keys.c.id == record.id).values(revoked_at=now))
        record = replace(record, revoked_at=now)
    return record


class KeyChanges(Protocol):
    """Tells whether keys were created or revoked, by this process or another (the seam a change
    notification protocol replaces polling behind)."""

    async def version(self) -> Hashable:
        """A value that differs after any key was created or revoked."""
        ...


class TableKeyChanges:
    """Keys are only ever added or revoked, never deleted or restored, so the number of keys and the number
    of revoked keys change with every such change (whatever the clocks say): one read of a tiny table,
    portable to any database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def version(self) -> Hashable:
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(sa.func.count(), sa.func.count(api_keys.c.revoked_at)).select_from(api_keys)
            )).one()
        return (row[0], row[1])


class ApiKeys:
    """Authenticates requests: key → owner, from memory after the first lookup."""

    NEGATIVE_TTL = 2.0

    def __init__(self, db: Database, secret: bytes, changes: KeyChanges | None = None, *,
                 recheck_seconds: float = 0.5, last_used_seconds: float = 60.0) -> None:
        self.db = db
        self.secret = secret
        self.changes = changes or TableKeyChanges(db)
        self.recheck_seconds = recheck_seconds
        self.last_used_seconds = last_used_seconds
        self._owners: dict[str, tuple[str, str]] = {}  # key -> (owner, key id)
        self._admins: set[str] = set()  # keys with the admin flag (the dashboard's operator view)
        self._unknown: dict[str, float] = {}
        self._used: dict[str, float] = {}  # key id -> last use not yet written
        self._version: Hashable = None
        self._generation = 0  # bumped whenever revocations were applied to the cache
        self._watcher: asyncio.Task[None] | None = None

    async def authenticate(self, key: str | None) -> str:
        if not key:
            raise Unauthenticated("missing API key: send it as HTTP basic auth user name or a bearer token")
        entry = self._owners.get(key)
        if entry is not None:
            self._used[entry[1]] = time.time()
            return entry[0]
        if self._unknown.get(key, 0.0) > time.monotonic():
            raise Unauthenticated("invalid API key")
        generation = self._generation
        digest = key_digest(self.secret, key)
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys.c.owner, api_keys.c.id, api_keys.c.admin).where(
                        api_keys.c.key_digest == digest, api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            if len(self._unknown) > 10000:
                self._unknown.clear()
            self._unknown[key] = time.monotonic() + self.NEGATIVE_TTL
            raise Unauthenticated("invalid API key")
        if row.admin:
            self._admins.add(key)
        if generation == self._generation:  # no revocation was applied while we read: safe to cache
            self._owners[key] = (str(row.owner), str(row.id))
        self._used[row.id] = time.time()
        return str(row.owner)

    async def identify(self, key: str | None) -> tuple[str, bool]:
        """(owner, whether the key is an admin key) for an authenticated key."""
        owner = await self.authenticate(key)
        return owner, key in self._admins

    async def create(self, owner: str) -> str:
        key = new_api_key()
        statement = insert_key_statement(owner, key_digest(self.secret, key), shown_prefix(key))
        await self.db.write(lambda conn: conn.execute(statement))
        return key

    # -- keeping the cache true ------------------------------------------------------------------------
    async def start(self) -> None:
        self._version = await self.changes.version()
        self._watcher = asyncio.create_task(self._watch(), name="api-keys")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        with contextlib.suppress(Exception):
            await self.flush_last_used()

    async def _watch(self) -> None:
        next_flush = time.monotonic() + self.last_used_seconds
        while True:
            await asyncio.sleep(self.recheck_seconds)
            try:
                await self.refresh()
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + self.last_used_seconds
                    await self.flush_last_used()
            except Exception:
                log.exception("checking API keys failed; retrying")

    async def refresh(self) -> None:
        """Drop revoked keys from the cache if any key changed since the last check."""
        version = await self.changes.version()
        if version == self._version:
            return
        async with self.db.connect() as conn:
            revoked = {r.id for r in await conn.execute(
                sa.select(api_keys.c.id).where(api_keys.c.revoked_at.is_not(None)))}
        self._generation += 1
        self._owners = {k: entry for k, entry in self._owners.items() if entry[1] not in revoked}
        self._unknown.clear()  # a key tried before it was created works at once
        self._version = version

    async def flush_last_used(self) -> None:
        """Write the last-used times gathered since the previous flush, all in one statement."""
        if not self._used:
            return
        used, self._used = self._used, {}
        rows = [{"key_id": key_id, "used_at": at} for key_id, at in used.items()]
        statement = (
            api_keys.update()
            .where(api_keys.c.id == sa.bindparam("key_id"))
            .values(last_used_at=sa.bindparam("used_at"))
        )
        await self.db.write(lambda conn: conn.execute(statement, rows))
