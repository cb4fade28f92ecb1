"""A client's frames of one event-loop turn go out in one write, in the order sent."""

from __future__ import annotations

import asyncio

from engineio import packet
from engineio.async_socket import AsyncSocket

from consultd.transport._engineio_bridge import AsyncServer, _frame, emit_to


class _Transport:
    def __init__(self) -> None:
        self.closing = False
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _client(sio: AsyncServer, eio_sid: str) -> tuple[AsyncSocket, _Transport]:
    sock = AsyncSocket(sio.eio, eio_sid)
    sock.upgraded = True
    transport = _Transport()
    sock.fast_transport = transport  # type: ignore[attr-defined]
    sio.eio.sockets[eio_sid] = sock
    return sock, transport


def _event_frame(sio: AsyncServer, event: str, data: object) -> bytes:
    pkt = sio.packet_class(2, namespace="/", data=[event, data])  # socket.io EVENT
    return _frame(packet.Packet(packet.MESSAGE, pkt.encode()))


async def test_one_write_per_client_per_turn_in_order() -> None:
    sio = AsyncServer(async_mode="aiohttp")
    _, a = _client(sio, "a")
    _, b = _client(sio, "b")
    emit_to(sio, ["a", "b"], "y", {"n": 1})
    emit_to(sio, ["a"], "y", {"n": 2})
    assert a.written == [] and b.written == [], "held until the end of the turn"
    await asyncio.sleep(0)
    one, two = _event_frame(sio, "y", {"n": 1}), _event_frame(sio, "y", {"n": 2})
    assert a.written == [one + two]
    assert b.written == [one]
    emit_to(sio, ["b"], "y", {"n": 2})
    await asyncio.sleep(0)
    assert b.written == [one, two], "a later turn: a new write"


async def test_a_send_joins_the_frames_held_before_it() -> None:
    sio = AsyncServer(async_mode="aiohttp")
    sock, a = _client(sio, "a")
    emit_to(sio, ["a"], "y", {"n": 1})
    await sock.send(packet.Packet(packet.MESSAGE, data=b"\x01"))
    assert a.written == [], "the ack must not overtake the held event"
    await asyncio.sleep(0)
    assert a.written == [_event_frame(sio, "y", {"n": 1}) + b"\x82\x01\x01"]
    await sock.send(packet.Packet(packet.MESSAGE, data=b"\x02"))
    await sock.send(packet.Packet(packet.MESSAGE, data=b"\x03"))
    assert len(a.written) == 1, "acks are held to the turn's end as well"
    await asyncio.sleep(0)
    assert a.written[-1] == b"\x82\x01\x02\x82\x01\x03", "one write, in order"


async def test_a_transport_closed_meanwhile_gets_nothing() -> None:
    sio = AsyncServer(async_mode="aiohttp")
    _, a = _client(sio, "a")
    emit_to(sio, ["a"], "y", {"n": 1})
    a.closing = True
    await asyncio.sleep(0)
    assert a.written == []


async def test_a_queued_packet_goes_after_the_held_frames() -> None:
    sio = AsyncServer(async_mode="aiohttp")
    sock, a = _client(sio, "a")
    emit_to(sio, ["a"], "y", {"n": 1})
    sock.queue.put_nowait(packet.Packet(packet.NOOP))  # e.g. a close: the writer's turn
    emit_to(sio, ["a"], "y", {"n": 2})  # a queue is not overtaken
    assert sock.queue.qsize() == 2
    await asyncio.sleep(0)
    assert a.written == [_event_frame(sio, "y", {"n": 1})]
