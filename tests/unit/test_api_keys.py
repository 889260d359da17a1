"""API keys: naming a key to revoke it, revocation noticed from another connection, last-used batching."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from pathlib import Path

import pytest

from launch.server.domain.errors import InvalidRequest, NotFound, Unauthenticated
from launch.server.domain.owners import (
    ApiKeys,
    KeyRecord,
    find_key,
    insert_key_statement,
    key_digest,
    list_keys,
    new_api_key,
    revoke_key,
    shown_prefix,
)
from launch.stores.database import Database, create_sync_engine, migrate

SECRET = b"s" * 32


def record(id: str, prefix: str | None, digest: str = "d") -> KeyRecord:
    return KeyRecord(id=id, owner="alice", prefix=prefix, digest=digest, created_at=0.0, last_used_at=None,
                     revoked_at=None)


RECORDS = [record("abcdef0123", "lk_AAAAAAAA", "d1"), record("abcdef9999", "lk_BBBBBBBB", "d2"),
           record("123456abcd", None, "d3")]


def test_find_key_by_full_key_prefix_or_id() -> None:
    assert find_key(RECORDS, "lk_whatever-the-key-is-long", "d2").id == "abcdef9999"
    assert find_key(RECORDS, "lk_AAAAAAAA", "nope").id == "abcdef0123"
    assert find_key(RECORDS, "123456", "nope").id == "123456abcd"
    assert find_key(RECORDS, "abcdef0", "nope").id == "abcdef0123"


def test_find_key_refuses_unknown_short_and_ambiguous_refs() -> None:
    with pytest.raises(NotFound):
        find_key(RECORDS, "lk_AAAAAAAA-but-a-wrong-full-key", "nope")  # a full key never falls back to prefixes
    with pytest.raises(NotFound):
        find_key(RECORDS, "abc", "nope")  # too short to be an id prefix
    with pytest.raises(InvalidRequest, match="names 2 keys"):
        find_key(RECORDS, "abcdef", "nope")


def test_shown_prefix_keeps_eight_random_characters() -> None:
    key = new_api_key()
    assert shown_prefix(key) == key[:11] and len(key) > 40


class CountingChanges:
    def __init__(self) -> None:
        self.value = 0

    async def version(self) -> Hashable:
        return self.value


def _setup(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    migrate(url)
    key = new_api_key()
    engine = create_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(insert_key_statement("alice", key_digest(SECRET, key), shown_prefix(key)))
    engine.dispose()
    return url, key


def test_revocation_from_another_connection_is_applied_on_refresh(tmp_path: Path) -> None:
    url, key = _setup(tmp_path)

    async def scenario() -> None:
        db = Database(url)
        keys = ApiKeys(db, SECRET)
        await keys.start()
        try:
            assert await keys.authenticate(key) == "alice"
            engine = create_sync_engine(url)  # the CLI: another connection, another process
            with engine.begin() as conn:
                revoke_key(conn, SECRET, shown_prefix(key))
            engine.dispose()
            assert await keys.authenticate(key) == "alice"  # cached until the next check
            await keys.refresh()
            with pytest.raises(Unauthenticated):
                await keys.authenticate(key)
        finally:
            await keys.stop()
            await db.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_unchanged_version_reads_nothing_more(tmp_path: Path) -> None:
    url, key = _setup(tmp_path)

    async def scenario() -> None:
        db = Database(url)
        changes = CountingChanges()
        keys = ApiKeys(db, SECRET, changes)
        await keys.start()
        try:
            assert await keys.authenticate(key) == "alice"
            engine = create_sync_engine(url)
            with engine.begin() as conn:
                revoke_key(conn, SECRET, key)
            engine.dispose()
            await keys.refresh()  # the seam says nothing changed: the cache stays
            assert await keys.authenticate(key) == "alice"
            changes.value += 1
            await keys.refresh()
            with pytest.raises(Unauthenticated):
                await keys.authenticate(key)
        finally:
            await keys.stop()
            await db.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_last_used_is_written_in_one_batch(tmp_path: Path) -> None:
    url, key = _setup(tmp_path)

    async def scenario() -> None:
        db = Database(url)
        keys = ApiKeys(db, SECRET)
        try:
            for _ in range(100):
                await keys.authenticate(key)
            engine = create_sync_engine(url)
            with engine.connect() as conn:
                assert list_keys(conn)[0].last_used_at is None  # nothing written per request
            await keys.flush_last_used()
            with engine.connect() as conn:
                assert list_keys(conn)[0].last_used_at is not None
            engine.dispose()
        finally:
            await db.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
