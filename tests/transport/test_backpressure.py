"""A client that stops reading is cut off; the room does not wait for it."""

from __future__ import annotations

import asyncio

from engineio import packet

from consultd.transport._engineio_bridge import AsyncServer, CappedQueue


async def test_capped_queue_ends_the_writer_past_the_cap() -> None:
    overflows: list[int] = []
    q = CappedQueue(3, lambda: overflows.append(1))
    for i in range(3):
        q.put_nowait(packet.Packet(packet.MESSAGE, data=str(i)))
    q.put_nowait(packet.Packet(packet.MESSAGE, data="one too many"))
    q.put_nowait(packet.Packet(packet.MESSAGE, data="dropped"))
    assert overflows == [1] and q.overflowed
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert [getattr(i, "data", None) for i in items[:3]] == ["0", "1", "2"]
    assert items[3:] == [None], "the sentinel that stops the engine.io writer, nothing after it"


async def test_server_sockets_get_capped_queues() -> None:
    overflows: list[int] = []
    sio = AsyncServer(async_mode="aiohttp", max_queued=2, on_overflow=lambda: overflows.append(1))
    q = sio.eio.create_queue()
    assert isinstance(q, CappedQueue)
    # An engine.io socket's send() goes through the capped queue without ever blocking.
    from engineio.async_socket import AsyncSocket

    sock = AsyncSocket(sio.eio, "sid")
    for i in range(5):
        await asyncio.wait_for(sock.send(packet.Packet(packet.MESSAGE, data=str(i))), 0.1)
    assert overflows == [1]
    first = await sock.poll()
    assert [p.data for p in first] == ["0", "1"]
    assert await sock.poll() == [], "the writer is told to stop, which closes the websocket"


def test_frame_headers_follow_rfc6455() -> None:
    from consultd.transport._engineio_bridge import _frame_header

    assert _frame_header(0x2, 5) == b"\x82\x05"
    assert _frame_header(0x1, 125) == b"\x81\x7d"
    assert _frame_header(0x2, 126) == b"\x82\x7e\x00\x7e"
    assert _frame_header(0x2, 70_000) == b"\x82\x7f" + (70_000).to_bytes(8, "big")


class _Transport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


async def test_direct_write_only_when_nothing_is_queued_and_the_transport_keeps_up() -> None:
    from engineio.async_socket import AsyncSocket

    sio = AsyncServer(async_mode="aiohttp", max_queued=10)
    sock = AsyncSocket(sio.eio, "sid")
    sock.upgraded = True
    fast = _Transport(buffered=0)
    sock.fast_transport = fast  # type: ignore[attr-defined]
    await sock.send(packet.Packet(packet.MESSAGE, data=b"\x01\x02"))
    await asyncio.sleep(0)  # written at the end of the loop's turn (test_cork.py)
    assert fast.written == [b"\x82\x02\x01\x02"], "a binary frame carrying the packet"
    assert sock.queue.empty()

    fast.buffered = 1 << 20  # the client is not reading: go through the capped queue
    await sock.send(packet.Packet(packet.MESSAGE, data="late"))
    assert sock.queue.qsize() == 1
    fast.buffered = 0
    await sock.send(packet.Packet(packet.MESSAGE, data="after"))
    assert sock.queue.qsize() == 2, "never overtakes a queued packet"
    assert len(fast.written) == 1
