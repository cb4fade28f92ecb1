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
