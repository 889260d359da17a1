"""Bundle files for workers on this machine: read in place when the object store keeps files here, else
downloaded once into a cache (keys of bundles never change content: an upload URL takes one PUT)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from launch.stores.objects import LocalFiles, ObjectStore


class BundleFiles:
    def __init__(self, objects: ObjectStore, cache_dir: Path) -> None:
        self.objects = objects
        self.cache_dir = cache_dir
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, key: str) -> str:
        """A local file with the bytes of the object ``key``; raises ``KeyError`` if there is none."""
        if isinstance(self.objects, LocalFiles):
            path = self.objects.local_path(key)
            if not os.path.isfile(path):
                raise KeyError(key)
            return path
        cached = self.cache_dir / hashlib.sha256(key.encode()).hexdigest()
        async with self._locks.setdefault(key, asyncio.Lock()):  # workers starting together download once
            if not cached.is_file():
                data = await self.objects.get(key)
                await asyncio.to_thread(_write_atomically, cached, data)
        return str(cached)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
