"""The gateway ↔ worker wire protocol: length-prefixed frames over one persistent, multiplexed stream
(Unix socket locally, TCP across hosts). Cheaper than HTTP on both sides of the hop, and a frame kind per
message leaves room for streamed chunks.

Frame: ``!IIB`` header (payload length, request id, kind), then the payload.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

HEADER = struct.Struct("!IIB")
MAX_PAYLOAD = 2**31

PREDICT = 1  # gateway → worker: JSON {"args"|"url", "return_pickled"}
RESULT_JSON = 2  # worker → gateway: JSON {"status": "SUCCESS"|"FAILURE", "result"|"traceback"}
RESULT_PICKLE = 3  # worker → gateway: cloudpickled output (opaque to the gateway)
PING = 4
PONG = 5
REJECTED = 6  # worker → gateway: not run (draining or malformed); JSON {"detail"}
PREDICT_INPUT = 7  # gateway → worker: a PREDICT whose input is bytes the gateway fetched (``url`` inputs)
# Streams (``launch.worker.streams``): one request id per stream, items flow under credit (flow control).
STREAM = 8  # gateway → worker: JSON {"args", "credit": bytes}: run the predict function as a stream
STREAM_INPUT = 9  # gateway → worker: a STREAM whose input is fetched bytes (payload as ``pack_input``)
CHUNK = 10  # worker → gateway: one item, as JSON
END = 11  # worker → gateway: the stream is complete; JSON {"items": n}
STREAM_ERROR = 12  # worker → gateway: the predict function raised mid-stream; JSON {"traceback"}
CREDIT = 13  # gateway → worker: ``CREDIT_FORMAT``: the gateway takes that many more bytes of chunks
CANCEL = 14  # gateway → worker: the client went away: close the generator (its ``finally`` runs)
CREDIT_FORMAT = struct.Struct("!I")
STATS = 15  # gateway → worker (empty) and back: JSON {"compute": histogram, "inflight"} for /metrics
_INPUT_HEAD = struct.Struct("!I")


def pack_input(request: bytes, data: bytes) -> bytes:
    """A ``PREDICT_INPUT`` payload: the JSON request, then the input bytes."""
    return b"".join((_INPUT_HEAD.pack(len(request)), request, data))


def unpack_input(payload: bytes) -> tuple[bytes, bytes]:
    """(JSON request, input bytes) of a ``PREDICT_INPUT`` payload; ``FrameError`` if malformed."""
    if len(payload) < _INPUT_HEAD.size:
        raise FrameError("PREDICT_INPUT payload too short")
    (length,) = _INPUT_HEAD.unpack_from(payload)
    end = _INPUT_HEAD.size + length
    if end > len(payload):
        raise FrameError("PREDICT_INPUT request length past the payload")
    return payload[_INPUT_HEAD.size:end], payload[end:]


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameReader:
    """Incremental decoder: feed bytes, iterate complete frames. A frame announcing more than
    ``max_payload`` bytes is refused before it is buffered (the peer may not be trusted). Each payload is
    copied once, out of the received chunk (or out of the buffer holding a frame that spans chunks)."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buffer = bytearray()
        self.max_payload = max_payload

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:  # the usual case: whole frames straight out of the chunk, only a tail is kept
            source = data
        offset = 0
        size = HEADER.size
        total = len(source)
        with memoryview(source) as view:
            while total - offset >= size:
                length, request_id, kind = HEADER.unpack_from(source, offset)
                if length > self.max_payload:
                    raise FrameError(f"frame of {length} bytes is over the limit of {self.max_payload}")
                end = offset + size + length
                if total < end:
                    break
                yield request_id, kind, view[offset + size:end].tobytes()
                offset = end
            if source is data and offset < total:
                buffer += view[offset:]
        if source is buffer and offset:
            del buffer[:offset]


class FrameWriter:
    """Coalesces the frames written during one event-loop turn into one ``transport.write``: under load
    that is one system call and one wake-up of the peer for many frames, instead of one each."""

    def __init__(self) -> None:
        self.transport: Any = None
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, request_id: int, kind: int, payload: bytes) -> None:
        self._pending.append(HEADER.pack(len(payload), request_id, kind))
        self._pending.append(payload)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._pending)  # one vectored write, no joined copy (uvloop)
        self._pending = []


class FrameProtocol(asyncio.Protocol):
    """One end of a frame connection: decodes incoming frames (``frame_received``), coalesces outgoing ones
    (``send``) and closes the connection on a malformed frame."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.reader = FrameReader(max_payload)
        self.writer = FrameWriter()
        self.transport: asyncio.Transport | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.writer.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            for request_id, kind, payload in self.reader.feed(data):
                self.frame_received(request_id, kind, payload)
        except FrameError as exc:
            self.connection_lost(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport.close()
        self.transport = None
        self.writer.transport = None

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, request_id: int, kind: int, payload: bytes) -> None:
        if self.transport is not None:
            self.writer.write(request_id, kind, payload)
