"""The group writer on SQLite: its commits never checkpoint the write-ahead log themselves; a thread does,
and the log is started over once it has grown (so it stays bounded under a steady stream of writes)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from launch.stores.database import GroupWriter, WalCheckpointer

BLOB = os.urandom(4096)  # each commit appends a page or two to the log


def test_commits_leave_checkpoints_to_the_checkpointer_and_the_log_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WalCheckpointer, "INTERVAL", 0.005)
    monkeypatch.setattr(WalCheckpointer, "RESET_FRAMES", 40)
    path = tmp_path / "w.db"
    writer = GroupWriter(f"sqlite:///{path}")
    commits = 200

    def create(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")

    def insert(conn: sa.Connection) -> int:
        conn.exec_driver_sql("INSERT INTO t (data) VALUES (?)", (BLOB,))
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

    async def run() -> list[int]:
        await writer.write(create)
        seen = []
        for _ in range(commits):  # one commit each
            seen.append(await writer.write(insert))
            await asyncio.sleep(0.0005)
        return seen

    try:
        autocheckpoints = asyncio.run(run())
        assert set(autocheckpoints) == {0}, "the writer's own commits must not checkpoint"
        largest_log = os.path.getsize(f"{path}-wal")
    finally:
        writer.close()
    checkpointer = writer._checkpointer
    assert checkpointer is not None and not checkpointer._thread.is_alive(), "close stops the checkpointer"
    # without checkpoints the log would hold every commit's pages: over 200 x 4 KiB
    assert largest_log < commits * 4096 / 2, f"the log grew to {largest_log} bytes"
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == commits
