"""Object store in a local directory. Writes are atomic (temp file + rename)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class LocalObjectStore:
    """Keys map to files under ``root``; keys with ``..`` or absolute paths are refused."""

    presigns = False

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
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
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def children(self, prefix: str) -> list[str]:
        folder = self._folder(prefix)
        try:
            return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._folder(prefix)

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
