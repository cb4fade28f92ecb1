"""Fails loudly when a python-socketio / python-engineio upgrade moves what
``consultd/transport/_engineio_bridge.py`` relies on."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import engineio
import socketio
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket


def test_pinned_versions() -> None:
    assert version("python-socketio") == "5.18.1"
    assert version("python-engineio") == "4.15.1"


def test_private_names_still_exist() -> None:
    assert hasattr(socketio.AsyncServer, "_engineio_server_class")
    assert hasattr(socketio.AsyncServer, "_handle_event_internal")
    assert hasattr(socketio.AsyncServer, "_handle_eio_message")
    assert list(inspect.signature(socketio.AsyncServer._handle_event_internal).parameters) == [
        "self",
        "server",
        "sid",
        "eio_sid",
        "data",
        "namespace",
        "id",
    ]
    assert hasattr(engineio.AsyncServer, "create_queue")
    assert "websocket" in eio_aiohttp._async
    assert hasattr(eio_aiohttp.WebSocket, "wait")
    assert "self.queue" in inspect.getsource(AsyncSocket.close)
    # emit_to: the socket table, the per-socket state it reads, the room membership.
    assert "self.sockets" in inspect.getsource(engineio.AsyncServer._get_socket)
    for name in ("upgraded", "closed", "queue"):
        assert name in inspect.getsource(AsyncSocket.__init__) or name in inspect.getsource(
            engineio.base_socket.BaseSocket.__init__
        )
    # on_direct: the pending binary packets, the ack send, the connection check.
    assert "self._binary_packet = {}" in inspect.getsource(socketio.base_server.BaseServer.__init__)
    assert hasattr(socketio.AsyncServer, "_send_packet")
    for method in ("get_participants", "eio_sid_from_sid", "sid_from_eio_sid", "is_connected"):
        params = list(inspect.signature(getattr(socketio.AsyncManager, method)).parameters)
        assert params[0] == "self" and len(params) == 3, method


def test_poll_is_replaced_and_keeps_the_sentinel_contract() -> None:
    from consultd.transport import _engineio_bridge

    assert AsyncSocket.poll is _engineio_bridge._poll
    # The original (in the module's source) still has the contract _poll copies: the
    # writer's None sentinel is re-queued, and a timeout raises QueueEmpty.
    import engineio.async_socket

    source = inspect.getsource(engineio.async_socket)
    original = source.split("async def poll(self):", 1)[1].split("async def ", 1)[0]
    assert "self.queue.put_nowait(None)" in original
    assert "raise exceptions.QueueEmpty()" in original
    # schedule_ping/_send_ping: what _schedule_ping and _ping_due reproduce.
    ping = source.split("def schedule_ping(self):", 1)[1].split("async def _upgrade", 1)[0]
    assert "self.last_ping = None" in ping and "self.server.ping_interval" in ping
    assert "self.last_ping = time.time()" in ping and "packet.PING" in ping


async def test_ping_timer_sends_a_ping_then_waits_for_the_pong() -> None:
    import asyncio

    from engineio import packet

    from consultd.transport._engineio_bridge import AsyncServer

    sio = AsyncServer(async_mode="aiohttp", ping_interval=0.01)
    sock = AsyncSocket(sio.eio, "sid")
    sock.last_ping = 1.0  # a previous cycle completed
    sock.schedule_ping()
    assert sock.last_ping is None
    await asyncio.sleep(0.05)
    sent = sock.queue.get_nowait()
    assert sent.packet_type == packet.PING and sock.last_ping is not None
    sock.last_ping = None  # a cycle still in flight: schedule_ping does nothing
    sock.schedule_ping()
    await asyncio.sleep(0.03)
    assert sock.queue.empty()


def test_websocket_handler_is_replaced_and_keeps_the_handshake() -> None:
    from consultd.transport import _engineio_bridge

    assert AsyncSocket._websocket_handler is _engineio_bridge._websocket_handler
    # What the replacement copies from the original: the upgrade probe, the NOOP that
    # ends the long poll, the UPGRADE packet, the writer's None sentinel, the close.
    import engineio.async_socket

    source = inspect.getsource(engineio.async_socket).split(
        "async def _websocket_handler(self, ws):", 1
    )[1]
    for needle in (
        "data='probe'",
        "packet.NOOP",
        "packet.UPGRADE",
        "self.upgraded = True",
        "await self.queue.put(None)",
        "reason=self.server.reason.TRANSPORT_CLOSE",
    ):
        assert needle in source, needle


async def test_a_silent_peer_is_cut_off_after_the_ping_timeout() -> None:
    import asyncio

    from engineio import packet

    from consultd.transport._engineio_bridge import AsyncServer

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    sio = AsyncServer(async_mode="aiohttp", ping_interval=0.01, ping_timeout=0.02)
    sock = AsyncSocket(sio.eio, "sid")
    transport = Transport()
    sock.fast_transport = transport
    sock.last_ping = 1.0
    sock.schedule_ping()
    await asyncio.sleep(0.02)
    assert sock.queue.get_nowait().packet_type == packet.PING
    await asyncio.sleep(0.04)  # no PONG
    assert transport.aborted
    assert sock.queue.get_nowait() is None  # the writer's sentinel: the read loop ends


async def test_a_pong_in_time_keeps_the_peer() -> None:
    import asyncio

    from engineio import packet

    from consultd.transport._engineio_bridge import AsyncServer

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    sio = AsyncServer(async_mode="aiohttp", ping_interval=0.01, ping_timeout=0.03)
    sock = AsyncSocket(sio.eio, "sid")
    transport = Transport()
    sock.fast_transport = transport
    sock.last_ping = 1.0
    sock.schedule_ping()
    await asyncio.sleep(0.02)
    assert sock.queue.get_nowait().packet_type == packet.PING
    await sock.receive(packet.Packet(packet.PONG))
    await asyncio.sleep(0.025)  # past the first PING's deadline, before the next one's
    assert not transport.aborted


def test_the_message_and_event_fast_paths_copy_what_they_skip() -> None:
    """The read loop calls the "message" handler itself and ``_trigger_event`` resolves
    handlers without ``inspect``: the originals must still do only that."""
    source = inspect.getsource(AsyncSocket.receive)
    assert "elif pkt.packet_type == packet.MESSAGE:" in source
    assert "self.server._trigger_event(" in source and "'message', self.sid, pkt.data," in source
    trigger = inspect.getsource(engineio.AsyncServer._trigger_event)
    assert "return await self.handlers[event](*args)" in trigger
    assert "self.logger.exception(event + ' async handler error')" in trigger
    sio_trigger = inspect.getsource(socketio.AsyncServer._trigger_event)
    assert "handler, args = self._get_event_handler(event, namespace, args)" in sio_trigger
    assert "ret = await handler(*args)" in sio_trigger
    assert "disconnect" in socketio.AsyncServer.reserved_events
    assert "connect" in socketio.AsyncServer.reserved_events


async def test_events_reach_sync_and_async_handlers_once_each() -> None:
    from consultd.transport._engineio_bridge import AsyncServer

    sio = AsyncServer(async_mode="aiohttp")
    got: list[tuple[str, tuple[object, ...]]] = []

    async def on_async(sid: str, payload: object) -> str:
        got.append(("async", (sid, payload)))
        return "a"

    def on_sync(sid: str, payload: object) -> str:
        got.append(("sync", (sid, payload)))
        return "s"

    async def on_any(event: str, sid: str, *args: object) -> str:
        got.append(("any", (event, sid, *args)))
        return "*"

    sio.on("a", on_async)
    sio.on("s", on_sync)
    sio.on("*", on_any)
    for _ in range(2):  # the second time from the cache
        assert await sio._trigger_event("a", "/", "sid1", 1) == "a"
        assert await sio._trigger_event("s", "/", "sid1", 2) == "s"
        assert await sio._trigger_event("zz", "/", "sid1", 3) == "*"
    once = [("async", ("sid1", 1)), ("sync", ("sid1", 2)), ("any", ("zz", "sid1", 3))]
    assert got == once * 2
