"""Length-prefixed frames for F2's front↔worker unix socket: (request id, ok flag, payload)."""

from __future__ import annotations

import asyncio
import struct

HEADER = struct.Struct("!IIB")  # request id, payload length, ok flag / model index


def pack(request_id: int, flag: int, payload: bytes) -> bytes:
    return HEADER.pack(request_id, len(payload), flag) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    request_id, length, flag = HEADER.unpack(await reader.readexactly(HEADER.size))
    return request_id, flag, await reader.readexactly(length)
