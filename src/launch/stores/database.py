"""The database engine: SQLite by default, PostgreSQL by URL, schema managed by Alembic migrations.

``sqlite:///path`` and ``postgresql://...`` are the user-facing URL schemes; they are mapped to the async
drivers (aiosqlite, asyncpg) for the server and to the sync drivers for migrations and the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_MIGRATIONS = Path(__file__).with_name("migrations")


def _split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"database URL must look like scheme://..., got {url!r}")
    return scheme.split("+", 1)[0], rest


def async_url(url: str) -> str:
    """Map a user-facing database URL to the async driver SQLAlchemy should use."""
    scheme, rest = _split_scheme(url)
    if scheme not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported database scheme {scheme!r}; use sqlite:// or postgresql://")
    return f"{_ASYNC_DRIVERS[scheme]}://{rest}"


def sync_url(url: str) -> str:
    """Map a user-facing database URL to a sync driver (migrations, CLI)."""
    scheme, rest = _split_scheme(url)
    return f"{scheme}://{rest}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite connections get WAL and a busy timeout."""
    engine = create_async_engine(async_url(url), pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def create_sync_engine(url: str) -> sa.Engine:
    """A sync engine for ``url`` (used by migrations and the CLI)."""
    engine = sa.create_engine(sync_url(url))
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    engine = create_sync_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
