"""The gateway ↔ worker frames: split anywhere, coalesced writes, oversize refused."""

from __future__ import annotations

import asyncio

import pytest

from launch import wire


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, chunks: list[bytes]) -> None:  # one vectored write
        self.writes.append(b"".join(chunks))

    def is_closing(self) -> bool:
        return False


def test_frames_written_in_one_turn_go_out_in_one_write_and_read_back_split_anywhere() -> None:
    async def scenario() -> list[bytes]:
        writer = wire.FrameWriter()
        transport = FakeTransport()
        writer.transport = transport
        writer.write(1, wire.PREDICT, b'{"args": {}}')
        writer.write(2, wire.PING, b"")
        writer.write(3, wire.RESULT_PICKLE, bytes(range(256)) * 10)
        await asyncio.sleep(0)
        return transport.writes

    writes = asyncio.run(scenario())
    assert len(writes) == 1
    data = writes[0]
    expected = [(1, wire.PREDICT, b'{"args": {}}'), (2, wire.PING, b""),
                (3, wire.RESULT_PICKLE, bytes(range(256)) * 10)]
    for cut in (1, 5, 9, 10, 30, len(data) - 1):
        reader = wire.FrameReader()
        frames = list(reader.feed(data[:cut])) + list(reader.feed(data[cut:]))
        assert frames == expected
    reader = wire.FrameReader()  # one byte at a time, and the whole stream twice in one chunk
    assert [f for i in range(len(data)) for f in reader.feed(data[i:i + 1])] == expected
    assert list(reader.feed(data + data)) == expected * 2


def test_oversize_frame_is_refused() -> None:
    header = wire.HEADER.pack(wire.MAX_PAYLOAD + 1, 1, wire.PREDICT)
    with pytest.raises(wire.FrameError):
        list(wire.FrameReader().feed(header))
