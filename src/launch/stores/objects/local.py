"""Object store in a local directory. Writes are atomic (temp file + rename).

Records (``put_record``: small objects under a prefix that is deleted as a whole, such as an hour of sync
predictions' pickled results) are appended to a segment file of their prefix instead of a file each: one write
instead of creating a file (which cost ~40-170 µs of system time per result on ext4). A record's key names its
segment, offset and length (``<segment>-<offset>-<length>.rec``); keys are signed into result URLs by the
server, never chosen by users.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_RECORD = re.compile(r"^(?P<segment>[0-9a-f]{16})-(?P<offset>\d{1,15})-(?P<length>\d{1,12})\.rec$")
RECORD_MAX_BYTES = 256 * 1024  # larger objects get a file of their own
SEGMENT_MAX_BYTES = 64 * 1024 * 1024
OPEN_SEGMENTS = 4  # prefixes with a segment open for appends (one per hour of results: the newest few)


class _Segment:
    def __init__(self, folder: Path) -> None:
        self.name = secrets.token_hex(8)
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / f"{self.name}.seg", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                          | os.O_CLOEXEC, 0o644)
        self.size = 0

    def append(self, data: bytes) -> int:
        offset = self.size
        _write_all(self.fd, data)
        self.size += len(data)
        return offset


def _write_all(fd: int, data: bytes) -> None:
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])


class LocalObjectStore:
    """Keys map to files under ``root``; keys with ``..`` or absolute paths are refused."""

    presigns = False

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._segments: dict[str, _Segment] = {}  # prefix -> the segment records of that prefix go to

    async def put_record(self, prefix: str, data: bytes) -> str:
        if len(data) > RECORD_MAX_BYTES:
            key = f"{prefix}{secrets.token_hex(16)}.bin"
            await self.put(key, data, fresh=True)
            return key
        segment = self._segments.get(prefix)
        if segment is None or segment.size + len(data) > SEGMENT_MAX_BYTES:
            if segment is not None:
                os.close(segment.fd)
            segment = self._segments[prefix] = _Segment(self._folder(prefix))
            while len(self._segments) > OPEN_SEGMENTS:  # the oldest prefix takes no more records
                os.close(self._segments.pop(next(iter(self._segments))).fd)
        try:
            offset = segment.append(data)
        except BaseException:  # part of it may be in the file: offsets past it would be wrong, start a new one
            os.close(self._segments.pop(prefix).fd)
            raise
        return f"{prefix}{segment.name}-{offset}-{len(data)}.rec"

    def _record(self, key: str) -> tuple[Path, int, int] | None:
        """(segment file, offset, length) of a record's key; None for other keys."""
        folder, _, name = key.rpartition("/")
        match = _RECORD.fullmatch(name)
        if match is None:
            return None
        path = self._path(f"{folder}/{match['segment']}.seg") if folder else self._path(f"{match['segment']}.seg")
        return path, int(match["offset"]), int(match["length"])

    @staticmethod
    def _read_record(path: Path, offset: int, length: int) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                data = os.pread(handle.fileno(), length, offset)
        except FileNotFoundError:
            return None
        return data if len(data) == length else None

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
            raise ValueError(f"invalid object key {key!r}")
        return self.root / key

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes, *, fresh: bool = False) -> None:
        path = self._path(key)
        if len(data) < 256 * 1024:  # small writes are cheaper inline than a thread hop
            if not (fresh and self._write_new(path, data)):
                self._write(path, data)
        else:
            await asyncio.to_thread(self._write, path, data)

    @staticmethod
    def _write_new(path: Path, data: bytes) -> bool:
        """Create the file and write it, without a temporary file and a rename (half the system calls: a
        sync prediction's pickled result is one of these). Only for a key nobody can read before ``put``
        returns; False if the file exists (then it is replaced atomically as usual)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:  # its folder is new (or was swept): make it once
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    async def get(self, key: str) -> bytes:
        record = self._record(key)
        if record is not None:
            data = await asyncio.to_thread(self._read_record, *record)
            if data is None:
                raise KeyError(key)
            return data
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    async def delete(self, key: str) -> None:
        if self._record(key) is None:  # a record goes with its prefix (delete_prefix)
            self._path(key).unlink(missing_ok=True)

    async def exists(self, key: str) -> bool:
        record = self._record(key)
        if record is not None:
            path, offset, length = record
            try:
                return path.stat().st_size >= offset + length
            except FileNotFoundError:
                return False
        return self._path(key).is_file()

    async def children(self, prefix: str) -> list[str]:
        folder = self._folder(prefix)
        try:
            return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._folder(prefix)
        for open_prefix in [p for p in self._segments if p.startswith(prefix)]:
            os.close(self._segments.pop(open_prefix).fd)

        def remove() -> int:
            if not folder.is_dir():
                return 0
            count = sum(len(files) for _, _, files in os.walk(folder))
            shutil.rmtree(folder, ignore_errors=True)
            return count

        return await asyncio.to_thread(remove)

    def _folder(self, prefix: str) -> Path:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix ends with '/': {prefix!r}")
        return self._path(prefix[:-1])

    def presigned_get(self, key: str, ttl: int) -> str | None:
        return None

    def local_path(self, key: str) -> str:
        return str(self._path(key))
