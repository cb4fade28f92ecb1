"""The only module that touches python-socketio / python-engineio private names.

Pinned versions are in ``pyproject.toml``; ``tests/transport/test_engineio_bridge.py``
fails loudly if an upgrade moves any of them.

- ``CappedQueue``: Engine.IO keeps an unbounded send queue per client (python-engineio
  #133). Past ``max_queued`` packets the client is cut off (the ``None`` sentinel ends its
  writer task and closes the websocket); it reconnects and resyncs, and the room never
  waits for it nor grows the server's memory.
- ``NoDeflateWebSocket``: aiohttp negotiates permessage-deflate by default; refused here
  (an idle connection cost 130 KB with it and every delivery twice the CPU). It also
  closes a connection whose text frame is not Engine.IO.
- ``AsyncSocket.poll``: the same logic without ``asyncio.wait_for``, which on Python 3.11
  creates a task per call: the per-client writer polls once per delivered packet, and
  that task was about a third of the writer's CPU.
- ``AsyncSocket.send``: when a websocket client's queue is empty and its transport is
  not backed up, the frame is written straight to the transport (RFC 6455 §5.2, one
  write) instead of waking the client's writer task: a delivery then costs a header and
  a ``write``. Otherwise it is queued as before (ordering kept: the fast path is only
  taken with nothing queued), so the cap above still bounds a slow client.
- ``emit_to``: one event to many clients, encoded once into one websocket frame and
  written to each client the same way (direct write, else its queue), with no task per
  recipient: ``AsyncManager.emit`` creates and awaits a task per recipient, which cost
  more than the write itself.
- ``_cork``: ``emit_to``'s direct writes are held until the end of the event loop's
  turn and a client's frames of that turn go out in one ``write`` (a send to a loopback
  socket costs 20-40 us, most of a small message's delivery; under load one turn handles
  many events, several of them for the same members). ``_send`` (an ack, a ping) is held
  the same way: a client that sent an update gets its ack and the others' updates of
  that turn in one write, and its frames keep their order.
- ``AsyncSocket.schedule_ping``: a timer per client instead of a task sleeping until the
  next ping (memory per idle connection); a second timer, ``ping_timeout`` after each
  PING, aborts the connection when no PONG came back.
- ``AsyncSocket._websocket_handler``: the same handshake and writer, and a read loop that
  awaits the next frame directly. Engine.IO's loop wraps every frame in a task and
  ``asyncio.wait_for`` (about 20 us per message, a tenth of a pointer's cost); its only
  use is to notice a silent peer, which the PONG timer above does once per ping.
- ``AsyncServer._handle_event_internal``: records whether the client asked for an ack, so
  a failure goes back either in the ack or as an ``error`` event, never both; and runs
  ``after_ack`` jobs once the ack is queued (a host's ``end`` closes their own socket).
- ``AsyncServer.on_direct``: an event whose handler is registered here goes from the
  decoded packet straight to ``handler(sid, *args)`` and its ack, with the same ack and
  ``after_ack`` rules. socket.io's way passes each event through five coroutines, a log
  call and a namespace lookup (about a fifth of a pointer message's server CPU); any
  other packet (connect, disconnect, acks, unknown events) still takes socket.io's way.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import engineio
import socketio
from aiohttp.web import WebSocketResponse
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet

ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=False)
#: Work to run once the current event's ack is queued (closing the sender's own socket).
after_ack: contextvars.ContextVar[list[Callable[[], Any]] | None] = contextvars.ContextVar(
    "after_ack", default=None
)


async def _with_ack_rules(ack: bool, event: Awaitable[None]) -> None:
    """Run ``event`` (a handler and the sending of its ack) with ``ack_requested`` set, and
    then the ``after_ack`` jobs it queued (module doc)."""
    token = ack_requested.set(ack)
    pending: list[Callable[[], Any]] = []
    after = after_ack.set(pending)
    try:
        await event
    finally:
        ack_requested.reset(token)
        after_ack.reset(after)
        for job in pending:
            await job()


async def _poll(self: AsyncSocket) -> list[Any]:
    """``AsyncSocket.poll`` with ``asyncio.timeout`` instead of ``wait_for``."""
    queue = self.queue
    if queue.empty():
        # A long-poll request gives up after a ping period. A websocket writer does not:
        # with direct writes its queue may stay empty for good, and the read loop (which
        # has its own timeout) ends it with the None sentinel.
        timeout = None
        if getattr(self, "fast_transport", None) is None:
            timeout = self.server.ping_interval + self.server.ping_timeout
        try:
            async with asyncio.timeout(timeout):
                first = await queue.get()
        except (TimeoutError, asyncio.CancelledError):
            raise eio_exceptions.QueueEmpty() from None
    else:
        first = queue.get_nowait()
    queue.task_done()
    if first is None:
        return []
    packets = [first]
    while not queue.empty():
        pkt = queue.get_nowait()
        queue.task_done()
        if pkt is None:
            queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


#: Bytes a client's transport may hold before sends go through its (capped) queue.
FAST_WRITE_LIMIT = 64 * 1024


def _frame_header(opcode: int, n: int) -> bytes:
    """A final, unmasked websocket frame header (server to client, RFC 6455 §5.2)."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127, n)


def _frame(pkt: Any) -> bytes:
    """The websocket frame carrying Engine.IO packet ``pkt``."""
    return _frame_of(pkt.encode())


def _frame_of(encoded: str | bytes) -> bytes:
    """The websocket frame of an encoded Engine.IO packet: text, or binary (a MESSAGE
    whose payload is the whole frame, as every msgpack socket.io packet)."""
    if isinstance(encoded, str):
        payload, opcode = encoded.encode(), 0x1
    else:
        payload, opcode = encoded, 0x2
    return _frame_header(opcode, len(payload)) + payload


def _direct_transport(sock: AsyncSocket) -> Any:
    """The socket's transport when a frame may be written to it now, else None."""
    transport = getattr(sock, "fast_transport", None)
    if (
        transport is not None
        and sock.upgraded
        and not sock.closed
        and sock.queue.empty()
        and not transport.is_closing()
        and transport.get_write_buffer_size() < FAST_WRITE_LIMIT
    ):
        return transport
    return None


async def _send(self: AsyncSocket, pkt: Any) -> None:
    """``AsyncSocket.send`` with a direct write when nothing is queued (see module doc)."""
    if not await self.check_ping_timeout():
        return
    transport = _direct_transport(self)
    if transport is not None:
        _cork(transport, _frame(pkt))  # with this turn's other frames (module doc)
        return
    await self.queue.put(pkt)


#: Frames held for one write per transport at the end of the loop's turn (module doc).
_corked: dict[Any, list[bytes]] = {}


def _cork(transport: Any, frame: bytes) -> None:
    held = _corked.get(transport)
    if held is not None:
        held.append(frame)
        return
    if not _corked:
        # Runs after the callbacks already ready, before any task woken after now (a
        # writer woken by a queued packet then writes after these frames).
        asyncio.get_running_loop().call_soon(_uncork)
    _corked[transport] = [frame]


def _uncork() -> None:
    corked = dict(_corked)
    _corked.clear()
    for transport, frames in corked.items():
        if not transport.is_closing():  # closed meanwhile: the client reconnects and resyncs
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


def emit_to(sio: socketio.AsyncServer, eio_sids: Iterable[str], event: str, data: Any) -> None:
    """Send ``event`` to the clients ``eio_sids`` (module doc); ordering per client is
    kept, as in ``_send``."""
    encoded = sio.packet_class(sio_packet.EVENT, namespace="/", data=[event, data]).encode()
    frame: bytes | None = None
    queued: eio_packet.Packet | None = None
    sockets = sio.eio.sockets
    for eio_sid in eio_sids:
        sock = sockets.get(eio_sid)
        if sock is None or sock.closed:
            continue
        transport = _direct_transport(sock)
        if transport is not None:
            if frame is None:
                frame = (
                    _frame_of(encoded)  # msgpack: the whole frame is the MESSAGE
                    if type(encoded) is bytes
                    else _frame(eio_packet.Packet(eio_packet.MESSAGE, encoded))
                )
            _cork(transport, frame)
        else:
            if queued is None:
                queued = eio_packet.Packet(eio_packet.MESSAGE, encoded)
            sock.queue.put_nowait(queued)


def _schedule_ping(self: AsyncSocket) -> None:
    """``AsyncSocket.schedule_ping`` with a timer instead of a task sleeping per client."""
    if self.last_ping:
        self.last_ping = None
        asyncio.get_running_loop().call_later(self.server.ping_interval, _ping_due, self)


def _ping_due(sock: AsyncSocket) -> None:
    if not sock.closing and not sock.closed:
        sock.last_ping = sent = time.time()
        loop = asyncio.get_running_loop()
        task = loop.create_task(sock.send(eio_packet.Packet(eio_packet.PING)))
        _pings.add(task)
        task.add_done_callback(_pings.discard)
        loop.call_later(sock.server.ping_timeout, _pong_due, sock, sent)


def _pong_due(sock: AsyncSocket, sent: float) -> None:
    """No PONG since the PING sent at ``sent``: the peer is gone (or too slow to keep);
    end the connection so that its read loop returns."""
    if sock.last_ping != sent or sock.closed:
        return
    transport = getattr(sock, "fast_transport", None)
    if transport is not None:
        transport.abort()
    sock.queue.put_nowait(None)


_pings: set[asyncio.Task[None]] = set()


async def _websocket_handler(self: AsyncSocket, ws: Any) -> None:
    """``AsyncSocket._websocket_handler`` with a direct read loop (module doc)."""
    if self.connected:
        # The socket was already connected by polling, so this is an upgrade: the probe.
        self.upgrading = True  # hold packet sends during the upgrade
        try:
            pkt = eio_packet.Packet(encoded_packet=await ws.wait())
        except (OSError, ValueError):
            self.upgrading = False
            return
        if pkt.packet_type != eio_packet.PING or pkt.data != "probe":
            self.upgrading = False
            return
        await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end the long poll
        try:
            pkt = eio_packet.Packet(encoded_packet=await ws.wait())
        except (OSError, ValueError):
            self.upgrading = False
            return
        if pkt.packet_type != eio_packet.UPGRADE:
            self.upgraded = False
            self.upgrading = False
            return
        self.upgraded = True
        self.upgrading = False
    else:
        self.connected = True
        self.upgraded = True

    async def writer() -> None:
        while True:
            try:
                packets = await self.poll()
            except eio_exceptions.QueueEmpty:
                break
            if not packets:
                break  # the None sentinel: the connection is closing
            try:
                for out in packets:
                    await ws.send(out.encode())
            except Exception:
                break
        await ws.close()

    writer_task = asyncio.ensure_future(writer())
    wait = ws.wait
    receive = self.receive
    Packet = eio_packet.Packet
    MESSAGE = eio_packet.MESSAGE
    server = self.server
    on_message = server.handlers.get("message") if not server.async_handlers else None
    while True:
        try:
            data = await wait()
        except Exception:
            break  # closed, not Engine.IO, or too large (aiohttp's max_msg_size)
        if data is None:
            break
        try:
            # A binary frame is a whole MESSAGE packet (Engine.IO v4): no packet object.
            message = data if type(data) is bytes else None
            if message is None:
                pkt = Packet(encoded_packet=data)
                if pkt.packet_type == MESSAGE:
                    message = pkt.data
            if message is not None and on_message is not None:
                # What ``receive`` -> ``_trigger_event("message")`` does, without the log
                # call, the coroutine check and the closure they cost per message.
                try:
                    await on_message(self.sid, message)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    server.logger.exception("message async handler error")
                continue
            await receive(pkt if message is None else Packet(MESSAGE, data=message))
        except eio_exceptions.SocketIsClosedError:
            break
        except Exception:  # a packet Engine.IO does not know: drop it, keep the client
            continue
    await self.queue.put(None)  # end the writer
    await writer_task
    await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


AsyncSocket.poll = _poll
AsyncSocket.send = _send
AsyncSocket.schedule_ping = _schedule_ping
AsyncSocket._websocket_handler = _websocket_handler


class CappedQueue(asyncio.Queue[Any]):
    def __init__(self, max_queued: int, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self._max_queued = max_queued
        self._on_overflow = on_overflow
        self.overflowed = False

    def put_nowait(self, item: Any) -> None:
        if self.overflowed and item is not None:
            return  # the writer is already being stopped (it re-queues the sentinel)
        if item is not None and self.qsize() >= self._max_queued:
            self.overflowed = True
            self._on_overflow()
            item = None  # end the writer: it closes the websocket
        super().put_nowait(item)


class NoDeflateWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        # The engine.io socket whose read loop this is: let its sends write directly.
        owner = getattr(self.handler, "__self__", None)
        if isinstance(owner, AsyncSocket):
            owner.fast_transport = request.transport
        await self.handler(self)
        return self._sock

    async def wait(self) -> str | bytes:
        # engineio's ``wait``, without a coroutine of its own per frame (the read loop
        # calls this once per message). engineio decodes text frames with int(frame[0])
        # and lets the ValueError escape its read loop; a frame that is not Engine.IO
        # closes the connection cleanly instead, as a close or an error does.
        data = (await self._sock.receive()).data
        if isinstance(data, bytes) or (isinstance(data, str) and data and data[0] in "0123456"):
            return data
        raise OSError("not an Engine.IO packet")


class EngineIOServer(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(
        self,
        *args: Any,
        max_queued: int = 1000,
        on_overflow: Callable[[], None] = lambda: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_queued = max_queued
        self._on_overflow = on_overflow
        drivers: dict[str, Any] = dict(self._async)  # type: ignore[has-type]
        drivers["websocket"] = NoDeflateWebSocket
        self._async = drivers

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return CappedQueue(self._max_queued, self._on_overflow)


class AsyncServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(
        self,
        *args: Any,
        max_queued: int = 1000,
        on_overflow: Callable[[], None] = lambda: None,
        **kwargs: Any,
    ) -> None:
        self._max_queued = max_queued
        self._on_overflow = on_overflow
        self._coroutine_handlers: dict[Any, bool] = {}
        self._direct: dict[str, Callable[..., Awaitable[Any]]] = {}
        super().__init__(*args, **kwargs)

    def _engineio_server_class(self) -> Any:
        max_queued, on_overflow = self._max_queued, self._on_overflow

        def make(*args: Any, **kwargs: Any) -> EngineIOServer:
            return EngineIOServer(*args, max_queued=max_queued, on_overflow=on_overflow, **kwargs)

        return make

    def on_direct(self, event: str, handler: Callable[..., Awaitable[Any]]) -> None:
        """Route ``event`` (namespace ``/``) to ``handler(sid, *args)`` directly (module doc);
        its return value is the ack."""
        self._direct[event] = handler

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: int | None
    ) -> None:
        await _with_ack_rules(
            id is not None,
            super()._handle_event_internal(server, sid, eio_sid, data, namespace, id),
        )

    async def _handle_direct(
        self, eio_sid: str, handler: Callable[..., Awaitable[Any]], args: list[Any], id: Any
    ) -> None:
        """What ``_handle_event`` and ``_handle_event_internal`` do for an event of
        ``on_direct``: the connection check, then the handler and its ack."""
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None and self.manager.is_connected(sid, "/"):
            await _with_ack_rules(
                id is not None, self._direct_event(eio_sid, sid, handler, args, id)
            )

    async def _direct_event(
        self,
        eio_sid: str,
        sid: str,
        handler: Callable[..., Awaitable[Any]],
        args: list[Any],
        id: Any,
    ) -> None:
        try:
            reply = await handler(sid, *args[1:])
        except asyncio.CancelledError:
            reply = None  # as ``_trigger_event``: an empty ack
        if id is not None:
            ack = self.packet_class(
                sio_packet.ACK, namespace="/", id=id, data=[] if reply is None else [reply]
            )
            await self._send_packet(eio_sid, ack)

    async def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        # socket.io's resolution of the handler, without ``inspect.iscoroutinefunction``
        # on every event: whether a handler is a coroutine function is asked once.
        if event in self.reserved_events:
            return await super()._trigger_event(event, namespace, *args)
        handler, args = self._get_event_handler(event, namespace, args)
        if handler is None:
            return await super()._trigger_event(event, namespace, *args)
        is_async = self._coroutine_handlers.get(handler)
        if is_async is None:
            is_async = self._coroutine_handlers[handler] = inspect.iscoroutinefunction(handler)
        if not is_async:
            return handler(*args)
        try:
            return await handler(*args)
        except asyncio.CancelledError:
            return None

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            if self._direct and eio_sid not in self._binary_packet:
                pkt = self.packet_class(encoded_packet=data)
                args = pkt.data
                if (
                    pkt.packet_type == sio_packet.EVENT
                    and type(args) is list
                    and args
                    and type(args[0]) is str
                    and pkt.namespace in ("/", None)
                ):
                    handler = self._direct.get(args[0])
                    if handler is not None:
                        await self._handle_direct(eio_sid, handler, args, pkt.id)
                        return
            # Anything else (connect, disconnect, acks, unknown events: a few per
            # connection) is decoded once more by socket.io's own dispatch, rather than
            # copying that dispatch here.
            await super()._handle_eio_message(eio_sid, data)
        except MalformedPacket:
            # Undecodable bytes: tell the client, drop the packet, keep the connection.
            sid = self.manager.sid_from_eio_sid(eio_sid, "/")
            if sid is not None:
                await self.emit(
                    "error",
                    {"code": "bad_request", "message": "malformed packet", "event": None},
                    to=sid,
                )


async def close_all(sio: AsyncServer) -> None:
    """Send every Engine.IO client a CLOSE without waiting for stalled ones to drain
    (``AsyncServer.disconnect`` waits on each queue, forever for a stalled client)."""
    for sock in list(sio.eio.sockets.values()):
        await sock.close(wait=False, abort=False, reason=sio.eio.reason.SERVER_DISCONNECT)
        sock.queue.put_nowait(
            None
        )  # after the CLOSE packet, end the writer: it closes the websocket


class MalformedPacket(ValueError):
    """A socket.io packet that does not decode (its bytes are not kept: they may hold PHI)."""
