"""The database engine: SQLite by default, PostgreSQL by URL, schema managed by Alembic migrations.

``sqlite:///path`` and ``postgresql://...`` are the user-facing URL schemes; they are mapped to the async
drivers (aiosqlite, asyncpg) for the server and to the sync drivers for migrations and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SYNC_DRIVERS = {"postgresql": "postgresql+psycopg"}
log = logging.getLogger("launch.database")
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
    return f"{_SYNC_DRIVERS.get(scheme, scheme)}://{rest}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # 16 MiB of page cache per connection instead of 2 MiB: the task indexes of a 100,000-task queue stay in
    # memory (pages are only cached once read: an idle server does not grow)
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def json_loads(text: str | bytes) -> Any:
    """JSON columns read with orjson (several times faster: listing 1,000 endpoints decodes 3,000 of them);
    what orjson refuses (NaN, lone surrogates written by older versions) is read as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite connections get WAL and a busy timeout."""
    engine = create_async_engine(async_url(url), pool_pre_ping=not url.startswith("sqlite"),
                                 json_deserializer=json_loads)
    if url.startswith("sqlite"):
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def create_sync_engine(url: str) -> sa.Engine:
    """A sync engine for ``url`` (used by migrations and the CLI)."""
    engine = sa.create_engine(sync_url(url), json_deserializer=json_loads)
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
        with engine.connect() as connection:
            if url.startswith("sqlite"):
                # SQLite changes a table by copying it; with foreign keys enforced, dropping the old copy of a
                # referenced table fails (the documented ALTER TABLE procedure turns them off meanwhile)
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            with connection.begin():
                if connection.dialect.name == "postgresql":  # gateways starting together migrate one at a time
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(7301)"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    finally:
        engine.dispose()


class DriverStatement:
    """A hot write run on the driver's own cursor, without SQLAlchemy's per-call work (compile cache lookup,
    bind and result processing: about 25 µs of a 45 µs insert on SQLite). Written once as SQL with
    ``:name`` parameters; compiled once per dialect to the driver's parameter style. Parameters are plain
    driver values (JSON already serialised, e.g. with ``json_param``); ``json_columns`` of returned rows are
    decoded. Runs inside the caller's transaction (the connection's own DBAPI connection)."""

    def __init__(self, sql: str, json_columns: Iterable[str] = ()) -> None:
        self.clause = sa.text(sql)
        self.json_columns = frozenset(json_columns)
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def _for(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...] | None]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            form = self.clause.compile(dialect=dialect)
            positions = tuple(form.positiontup) if form.positional and form.positiontup is not None else None
            compiled = self._compiled[dialect.name] = (form.string, positions)
        return compiled

    def run(self, conn: sa.Connection, params: Mapping[str, Any]) -> DriverResult:
        sql, positions = self._for(conn.dialect)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql, tuple(params[name] for name in positions) if positions is not None else params)
        return DriverResult(cursor, self.json_columns)

    def run_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """The statement once per row (the driver's executemany); the number of rows changed."""
        sql, positions = self._for(conn.dialect)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        args = [tuple(row[name] for name in positions) for row in rows] if positions is not None else rows
        cursor.executemany(sql, args)
        count = cursor.rowcount
        cursor.close()
        return int(count)


class DriverResult:
    """What a ``DriverStatement`` changed or returned: rows with attribute access, like SQLAlchemy's."""

    def __init__(self, cursor: Any, json_columns: frozenset[str]) -> None:
        self.rowcount: int = cursor.rowcount
        self._cursor = cursor
        self._json = json_columns
        if cursor.description is None:  # nothing returned: the cursor is done
            cursor.close()

    def all(self) -> list[SimpleNamespace]:
        if self._cursor.description is None:
            return []
        names = [column[0] for column in self._cursor.description]
        rows = [self._row(names, values) for values in self._cursor.fetchall()]
        self.rowcount = self._cursor.rowcount  # SQLite counts RETURNING rows as they are fetched
        self._cursor.close()
        return rows

    def first(self) -> SimpleNamespace | None:
        rows = self.all()
        return rows[0] if rows else None

    def _row(self, names: list[str], values: Sequence[Any]) -> SimpleNamespace:
        row = dict(zip(names, values, strict=True))
        for name in self._json:
            value = row.get(name)
            if isinstance(value, str | bytes):
                row[name] = json_loads(value)
        return SimpleNamespace(**row)


def json_param(value: Any) -> str | None:
    """A JSON column's value as a ``DriverStatement`` parameter (None stays SQL NULL)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson cannot write (integers over 64 bits) the standard library can
        return json.dumps(value)


T = TypeVar("T")
WriteFn = Callable[[sa.Connection], T]


class GroupWriter:
    """Every write of the server goes through one thread and one connection; writes that arrive while a
    transaction is running are committed together in the next one (group commit).

    SQLite allows one writer at a time: concurrent writers from a pool would queue on its lock with
    sleeping retries. One writer with group commit turns N small transactions into one, so an async task's
    three writes (submit, claim, result) cost a fraction of a commit each under load.
    """

    MAX_BATCH = 1024

    def __init__(self, url: str) -> None:
        self.engine = create_sync_engine(url)
        self._nested = not url.startswith("sqlite")  # PostgreSQL aborts a transaction on error: savepoints
        self._queue: queue.SimpleQueue[list[tuple[WriteFn[Any], asyncio.Future[Any]]] | None] = queue.SimpleQueue()
        self._pending: list[tuple[WriteFn[Any], asyncio.Future[Any]]] = []
        self._conn: sa.Connection | None = None  # the writer thread's own, kept: no pool round trip per batch
        self._checkpointer: WalCheckpointer | None = None
        if url.startswith("sqlite"):  # its commits never checkpoint: the checkpointer does
            sa.event.listen(self.engine, "connect", _no_autocheckpoint)
            self._checkpointer = WalCheckpointer(self.engine)
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(connection)`` in the next transaction; returns its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:  # hand the writes of this event-loop turn over together: one thread wake-up
            loop.call_soon(self._hand_over)
        self._pending.append((fn, future))
        return await future

    def _hand_over(self) -> None:
        self._queue.put(self._pending)
        self._pending = []

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = list(item)
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.extend(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        committed = False
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            conn = self._conn
            with conn.begin():
                for fn, future in batch:
                    outcomes.append((future, *self._apply(conn, fn)))
        except Exception as exc:  # the commit itself failed: nothing of the batch is durable
            outcomes = [(future, None, exc) for _, future in batch]
            self._drop_connection()  # the next batch starts on a new one (the server may have restarted)
        else:
            committed = True
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)
        if committed and self._checkpointer is not None:  # after the answers: a checkpoint here delays none
            self._checkpointer.committed(conn)

    def _apply(self, conn: sa.Connection, fn: WriteFn[Any]) -> tuple[Any, BaseException | None]:
        try:
            if self._nested:
                with conn.begin_nested():
                    return fn(conn), None
            return fn(conn), None
        except Exception as exc:
            return None, exc

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._pending:
            self._hand_over()
        self._queue.put(None)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._drop_connection()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


class WalCheckpointer:
    """SQLite's checkpoints (copying the write-ahead log into the database file, then syncing both) mostly on a
    thread of their own, instead of inside the commit that crosses the log's size limit: that commit took
    ~5 ms (the fsyncs) every ~1,000 writes, and the writes of its batch and of the batches queued behind it
    waited for it (the tail latency of async submissions).

    A passive checkpoint runs at most every ``INTERVAL`` seconds while there are commits; the writer goes on
    meanwhile and readers are never waited for. Such a checkpoint cannot end the log while the writer keeps
    appending to it, so once the log holds ``RESET_FRAMES`` the writer checkpoints once itself, between two
    batches (``due_in_writer``): with the log mostly copied already that is short, and its next transaction
    starts the log over."""

    INTERVAL = 0.25
    RESET_FRAMES = 8192  # ~32 MiB of log

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.due_in_writer = False
        self._due = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="db-checkpointer", daemon=True)
        self._thread.start()

    def committed(self, conn: sa.Connection) -> None:
        """Called by the writer after each commit, on its connection (no transaction open)."""
        if self.due_in_writer:
            self.due_in_writer = False
            try:
                checkpoint(conn.connection.dbapi_connection)
            except Exception as exc:  # the background checkpoints go on; the log is started over later
                log.warning("WAL checkpoint failed: %s", exc)
        self._due.set()

    def _run(self) -> None:
        conn: Any = None  # a DBAPI connection: a PRAGMA outside any transaction
        while True:
            self._due.wait()
            if not self._stopping:
                time.sleep(self.INTERVAL)  # commits of the next INTERVAL go into this checkpoint too
            self._due.clear()
            try:
                if conn is None:
                    conn = self.engine.raw_connection()
                if checkpoint(conn) >= self.RESET_FRAMES:
                    self.due_in_writer = True
            except Exception as exc:  # e.g. the database is locked by another process: the next one retries
                log.warning("WAL checkpoint failed: %s", exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            if self._stopping:  # that was the last one: what the last commits wrote
                break
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join(timeout=10)


def checkpoint(dbapi_connection: Any) -> int:
    """A passive checkpoint of SQLite's write-ahead log; the number of frames the log holds."""
    cursor = dbapi_connection.cursor()
    try:
        _busy, frames, _copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        cursor.close()
    return int(frames)


def _resolve(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Database:
    """Reads on an async engine; writes through the ``GroupWriter``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.writer = GroupWriter(url)

    def connect(self) -> Any:
        """``async with db.connect() as conn`` for reads."""
        return self.engine.connect()

    async def write(self, fn: WriteFn[T]) -> T:
        return await self.writer.write(fn)

    async def close(self) -> None:
        self.writer.close()
        await self.engine.dispose()
