"""Object store in an S3-compatible bucket (``s3://bucket/prefix``): AWS S3, MinIO, moto.

Endpoint, region and credentials come from the standard AWS variables and files (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` for MinIO or moto, profiles, instance
roles), so the URL names only where objects live. boto3 is blocking: every call runs on a thread. Streams are
uploaded in parts (multipart upload, aborted if the stream fails: nothing is stored). Downloads of results can
skip the gateway: the engine presigns GET URLs (``presigns``).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
PART_BYTES = 8 * 1024 * 1024  # S3's minimum part is 5 MiB (but the last)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; the prefix is empty or ends with ``/``."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"object store URL must look like s3://bucket/prefix, got {url!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3ObjectStore:
    presigns = True

    def __init__(self, url: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_url(url)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", config=Config(max_pool_connections=64, retries={"mode": "standard"}))
        self.client = client

    def _key(self, key: str) -> str:
        if not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
            raise ValueError(f"invalid object key {key!r}")
        return self.prefix + key

    async def put(self, key: str, data: bytes, *, fresh: bool = False) -> None:  # a PUT is atomic anyway
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    async def put_record(self, prefix: str, data: bytes) -> str:
        key = f"{self._prefix(prefix)[len(self.prefix):]}{secrets.token_hex(16)}.bin"
        await self.put(key, data)
        return key

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        full = self._key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        upload_id = (await asyncio.to_thread(
                            self.client.create_multipart_upload, Bucket=self.bucket, Key=full))["UploadId"]
                    parts.append(await self._part(full, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:  # small: one PUT
                await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=full, Body=bytes(buffer))
                return size
            if buffer:
                parts.append(await self._part(full, upload_id, len(parts) + 1, bytes(buffer)))
            await asyncio.to_thread(self.client.complete_multipart_upload, Bucket=self.bucket, Key=full,
                                    UploadId=upload_id, MultipartUpload={"Parts": parts})
            return size
        except BaseException:
            if upload_id is not None:
                await asyncio.to_thread(self.client.abort_multipart_upload, Bucket=self.bucket, Key=full,
                                        UploadId=upload_id)
            raise

    async def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        reply = await asyncio.to_thread(self.client.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id,
                                        PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": reply["ETag"]}

    async def get(self, key: str) -> bytes:
        full = self._key(key)

        def read() -> bytes:
            try:
                reply = self.client.get_object(Bucket=self.bucket, Key=full)
            except self.client.exceptions.NoSuchKey:
                raise KeyError(key) from None
            return bytes(reply["Body"].read())

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        return await asyncio.to_thread(head)

    async def children(self, prefix: str) -> list[str]:
        full = self._prefix(prefix)

        def listing() -> list[str]:
            names = []
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=full, Delimiter="/"):
                names += [common["Prefix"][len(full):].rstrip("/") for common in page.get("CommonPrefixes", [])]
            return sorted(names)

        return await asyncio.to_thread(listing)

    async def delete_prefix(self, prefix: str) -> int:
        full = self._prefix(prefix)

        def remove() -> int:
            count = 0
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:  # a page holds at most 1,000 keys: one delete_objects call
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    count += len(keys)
            return count

        return await asyncio.to_thread(remove)

    def _prefix(self, prefix: str) -> str:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix ends with '/': {prefix!r}")
        return self._key(prefix[:-1]) + "/"

    def presigned_get(self, key: str, ttl: int) -> str | None:
        """A URL that downloads the object straight from the bucket for ``ttl`` seconds (signed locally: no
        request to S3)."""
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=ttl))
