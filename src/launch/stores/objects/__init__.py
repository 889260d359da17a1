"""Object storage for bundles, results and batch files: a local directory (``file://``) or an S3-compatible
bucket (``s3://bucket/prefix``). What an engine can do beyond bytes in and out is asked of it
(``presigns``), never guessed from its URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable


class ObjectStore(Protocol):
    """Opaque bytes under slash-separated keys. Keys are chosen by the server, never by users."""

    presigns: bool
    """``presigned_get`` gives URLs clients download from without the gateway."""

    async def put(self, key: str, data: bytes, *, fresh: bool = False) -> None:
        """Store ``data`` at ``key``; readers see the whole object or none. ``fresh``: the key is new and
        nobody reads it before this returns (a result whose URL is handed out afterwards), so the engine may
        skip what makes a replacement atomic."""
        ...

    async def put_record(self, prefix: str, data: bytes) -> str:
        """Store ``data`` under a new key of the engine's choosing below ``prefix`` (ending with ``/``) and
        return the key. Records are deleted with their prefix (``delete_prefix``), not one by one; the engine
        may pack them together (the local store appends them to a segment file)."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store a stream without holding it in memory; nothing is stored if the stream raises. Returns the
        size."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes at ``key``; raises ``KeyError`` when there are none."""
        ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def children(self, prefix: str) -> list[str]:
        """The names one level under ``prefix`` (a key prefix ending with ``/``) that hold objects."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (ending with ``/``); how many there were."""
        ...

    def presigned_get(self, key: str, ttl: int) -> str | None:
        """A URL that serves the object to anyone holding it for ``ttl`` seconds; None if ``presigns`` is
        false."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """An engine whose objects are files on this machine (local placement reads bundles in place)."""

    def local_path(self, key: str) -> str: ...


def open_object_store(url: str) -> ObjectStore:
    """The object store engine for ``url`` (``file:///abs/dir``)."""
    scheme = url.partition("://")[0]
    if scheme == "file":
        from launch.stores.objects.local import LocalObjectStore

        return LocalObjectStore(url.removeprefix("file://"))
    if scheme == "s3":
        from launch.stores.objects.s3 import S3ObjectStore

        return S3ObjectStore(url)
    raise ValueError(f"unsupported object store scheme {scheme!r}; use file:// or s3://")
