"""Reading an endpoint's logs (environment builds, cold starts, worker output) for the API: everything, the
lines since a moment, or what was appended after a cursor (``launch endpoints logs NAME --follow``).

Worker lines start with an ISO 8601 UTC timestamp (``launch.worker.logs``); a line without one (a build tool's
output) belongs to the moment of the line before it, or to its file's last change for a file that has none.
The cursor is the byte offset reached in each file, so following never repeats or skips a line; it names the
newest ``CURSOR_FILES`` files only, plus the time of the newest file it no longer names (``~``, milliseconds):
older files (logs of workers long gone) count as read, so the cursor stays short enough for a query string.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import orjson

_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z ")
MAX_BYTES = 256 * 1024
CURSOR_FILES = 64
OLDER = "~"  # cursor key: files last changed at or before this many milliseconds count as read


def line_time(line: bytes) -> float | None:
    """The unix time a log line starts with, or None."""
    match = _STAMP.match(line)
    if match is None:
        return None
    return datetime.fromisoformat(match.group(1).decode() + "+00:00").timestamp()


def parse_cursor(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v >= 0}


def read_logs(log_dir: Path, since: float | None = None, cursor: dict[str, int] | None = None,
              limit: int = MAX_BYTES) -> tuple[str, str]:
    """(text, next cursor): each file's new complete lines under a ``==> name <==`` header, oldest file
    first, keeping lines at or after ``since`` (unix time); at most ``limit`` bytes (the newest are kept)."""
    try:
        files = sorted((p for p in log_dir.glob("*.log") if p.is_file()), key=lambda p: p.stat().st_mtime)
    except OSError:
        files = []
    reached = dict(cursor or {})
    parts: list[bytes] = []
    for path in files:
        if path.name not in reached and OLDER in reached and _millis(path) <= reached[OLDER]:
            continue
        start = reached.get(path.name, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read()
            modified = path.stat().st_mtime
        except OSError:
            continue
        if start and len(data) == 0:
            continue
        end = data.rfind(b"\n") + 1  # only complete lines: a line being written comes next time
        if end == 0:
            continue
        reached[path.name] = start + end
        kept = _since(data[:end].splitlines(keepends=True), since, modified)
        if kept:
            parts.append(f"==> {path.name} <==\n".encode() + b"".join(kept))
    text = b"".join(parts)[-limit:].decode("utf-8", "replace")
    return text, orjson.dumps(_bounded(reached, files)).decode()


def _millis(path: Path) -> int:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return 0


def _bounded(reached: dict[str, int], files: list[Path]) -> dict[str, int]:
    """The cursor with at most ``CURSOR_FILES`` files named (the newest; ``files`` is oldest first)."""
    named = [p for p in files if p.name in reached]
    if len(named) <= CURSOR_FILES:
        return reached
    dropped, kept = named[:-CURSOR_FILES], named[-CURSOR_FILES:]
    older = max([reached.get(OLDER, 0), *(_millis(p) for p in dropped)])
    return {OLDER: older, **{p.name: reached[p.name] for p in kept}}


def _since(lines: list[bytes], since: float | None, modified: float) -> list[bytes]:
    if since is None:
        return lines
    kept, current = [], None
    for line in lines:
        at = line_time(line)
        current = at if at is not None else current
        if (current if current is not None else modified) >= since:
            kept.append(line)
    return kept
