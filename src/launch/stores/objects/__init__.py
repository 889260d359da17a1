"""Object storage for bundles, results and batch files: a local directory (``file://``) or, later, S3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class ObjectStore(Protocol):
    """Opaque bytes under slash-separated keys. Keys are chosen by the server, never by users."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store a stream without holding it in memory; nothing is stored if the stream raises. Returns the
        size."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes at ``key``; raises ``KeyError`` when there are none."""
        ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> str | None:
        """A filesystem path to the object when the engine has one (lets local workers read it in place)."""
        ...


def open_object_store(url: str) -> ObjectStore:
    """The object store engine for ``url`` (``file:///abs/dir``)."""
    scheme = url.partition("://")[0]
    if scheme == "file":
        from launch.stores.objects.local import LocalObjectStore

        return LocalObjectStore(url.removeprefix("file://"))
    raise ValueError(f"unsupported object store scheme {scheme!r}; use file://")
