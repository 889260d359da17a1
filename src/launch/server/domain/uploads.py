"""Uploads through signed URLs: the client asks for a URL, PUTs raw bytes to it, then names the upload by
its location (``s3://<bucket>/<key>`` for the legacy client, or the same string from our SDK)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from launch.server import signing
from launch.server.domain.errors import Conflict, InvalidRequest, PayloadTooLarge
from launch.stores.objects import ObjectStore

BUCKET = "launch"
UPLOAD_PURPOSE = "upload"


@dataclass(frozen=True)
class UploadTicket:
    url: str
    bucket: str
    key: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def upload_prefix(owner: str) -> str:
    return f"uploads/{owner}/"


UPLOAD_KINDS = ("bundles", "batch-inputs")
MAX_LOCATION_CHARS = 1024
_UPLOAD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def key_from_location(owner: str, location: str) -> str | None:
    """The object key of one of ``owner``'s uploads named by ``location``; None if it names none.

    Keys have exactly the shape ``ticket`` issues (``uploads/<owner>/<kind>/<name>``): anything else (``..``,
    ``//``, escapes, NUL, very long strings) is refused here, before any store sees it."""
    prefix = f"s3://{BUCKET}/"
    if not isinstance(location, str) or not location.startswith(prefix):
        return None
    key = location[len(prefix):]
    rest = key.removeprefix(upload_prefix(owner))
    kind, _, name = rest.partition("/")
    if (len(location) > MAX_LOCATION_CHARS or rest == key or kind not in UPLOAD_KINDS
            or not _UPLOAD_NAME.fullmatch(name)):
        raise InvalidRequest(f"location {location[:200]!r} is not one of your uploads")
    return key


class Uploads:
    def __init__(self, objects: ObjectStore, secret: bytes, public_url: str, ttl: int, max_bytes: int) -> None:
        self.objects = objects
        self.secret = secret
        self.public_url = public_url
        self.ttl = ttl
        self.max_bytes = max_bytes

    def ticket(self, owner: str, kind: str) -> UploadTicket:
        key = f"{upload_prefix(owner)}{kind}/{uuid.uuid4().hex}"
        token = signing.sign(self.secret, UPLOAD_PURPOSE, key, self.ttl)
        return UploadTicket(url=f"{self.public_url}/v1/uploads/{token}", bucket=BUCKET, key=key)

    def key_for_token(self, token: str) -> str | None:
        return signing.verify(self.secret, UPLOAD_PURPOSE, token)

    async def receive(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store an upload streamed in ``chunks``, refusing it past ``max_bytes``. An upload URL takes one
        PUT: a registered bundle's code cannot be replaced through it afterwards."""
        if await self.objects.exists(key):
            raise Conflict("this upload URL was already used; ask for a new one")
        return await self.objects.put_stream(key, self._capped(chunks))

    async def _capped(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(f"upload is over the limit of {self.max_bytes} bytes")
            yield chunk
