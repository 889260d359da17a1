"""Reading endpoint logs: lines since a moment, and following with a cursor that never repeats a line."""

from __future__ import annotations

import os
from pathlib import Path

from launch.server.endpoint_logs import line_time, parse_cursor, read_logs
from launch.worker.logs import prefix_line


def test_line_time_parses_the_worker_prefix() -> None:
    assert line_time(prefix_line("hello", "r1", at=1_800_000_000.25).encode()) == 1_800_000_000.25
    assert line_time(b"no stamp here") is None


def test_since_keeps_recent_lines_and_their_continuations(tmp_path: Path) -> None:
    log = tmp_path / "worker-a.log"
    log.write_text(prefix_line("old", None, at=1000.0) + "\n" + prefix_line("new", "r9", at=2000.0) + "\n"
                   + "  a traceback line without a stamp\n")
    text, _ = read_logs(tmp_path, since=1500.0)
    assert "new" in text and "a traceback line" in text and "old" not in text
    assert text.startswith("==> worker-a.log <==\n")


def test_cursor_returns_only_what_was_appended_and_waits_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker-a.log"
    log.write_text("2026-01-01T00:00:00.000Z one\n")
    text, cursor = read_logs(tmp_path)
    assert "one" in text
    with open(log, "a") as handle:
        handle.write("2026-01-01T00:00:01.000Z two\npartial")
    env = tmp_path / "environment.log"
    env.write_text("$ uv pip install x\n")
    os.utime(env, (1, 1))  # older than the worker log: listed first
    text, cursor = read_logs(tmp_path, cursor=parse_cursor(cursor))
    assert "one" not in text and "two" in text and "partial" not in text and "uv pip install" in text
    assert text.index("environment.log") < text.index("worker-a.log")
    text, _ = read_logs(tmp_path, cursor=parse_cursor(cursor))
    assert text == ""
    assert parse_cursor("not json") is None and parse_cursor('{"a": -1}') == {}


def test_the_cursor_stays_short_and_old_files_count_as_read(tmp_path: Path) -> None:
    from launch.server import endpoint_logs

    for i in range(endpoint_logs.CURSOR_FILES + 10):
        path = tmp_path / f"worker-{i:03d}.log"
        path.write_text(f"2026-01-01T00:00:00.000Z line of {i}\n")
        os.utime(path, (1000 + i, 1000 + i))
    text, cursor = read_logs(tmp_path)
    assert "line of 0" in text and "line of 73" in text
    parsed = parse_cursor(cursor)
    assert parsed is not None and len(parsed) == endpoint_logs.CURSOR_FILES + 1 and len(cursor) < 8192
    newest = tmp_path / "worker-073.log"
    with open(newest, "a") as handle:
        handle.write("2026-01-01T00:00:01.000Z more\n")
    text, _ = read_logs(tmp_path, cursor=parsed)
    assert text.strip().splitlines()[-1].endswith("more") and "line of" not in text
