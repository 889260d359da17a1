"""The gateway ↔ worker wire protocol: length-prefixed frames over one persistent, multiplexed stream
(Unix socket locally, TCP across hosts). Cheaper than HTTP on both sides of the hop, and a frame kind per
message leaves room for streamed chunks.

Frame: ``!IIB`` header (payload length, request id, kind), then the payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER = struct.Struct("!IIB")
MAX_PAYLOAD = 2**31

PREDICT = 1  # gateway → worker: JSON {"args"|"url", "return_pickled"}
RESULT_JSON = 2  # worker → gateway: JSON {"status": "SUCCESS"|"FAILURE", "result"|"traceback"}
RESULT_PICKLE = 3  # worker → gateway: cloudpickled output (opaque to the gateway)
PING = 4
PONG = 5
REJECTED = 6  # worker → gateway: not run (draining or malformed); JSON {"detail"}


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(request_id: int, kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), request_id, kind) + payload


class FrameReader:
    """Incremental decoder: feed bytes, iterate complete frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = HEADER.size
        while len(buffer) - offset >= size:
            length, request_id, kind = HEADER.unpack_from(buffer, offset)
            if length > MAX_PAYLOAD:
                raise FrameError(f"frame of {length} bytes is over the limit")
            end = offset + size + length
            if len(buffer) < end:
                break
            yield request_id, kind, bytes(buffer[offset + size:end])
            offset = end
        if offset:
            del buffer[:offset]
