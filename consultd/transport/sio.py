"""socket.io events -> service calls; the one error -> ack/``error`` mapping.

``Gateway`` owns the socket bookkeeping (socket id <-> participant) and implements the
services' ``Notifier``. Every event goes through ``_dispatch``: connection check, size and
rate cap, payload validation, then the handler, which authorises through
``rooms.policy``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from pydantic import BaseModel, ValidationError

from consultd.errors import BadRequest, ConsultdError, Unauthorized, Unavailable, ValidationFailed
from consultd.ratelimit import RateLimiter
from consultd.rooms.room import Participant, Room
from consultd.services import Services
from consultd.tasks import spawn
from consultd.transport import schemas as s
from consultd.transport._engineio_bridge import (
    AsyncServer,
    ack_requested,
    after_ack,
    close_all,
    emit_to,
)
from consultd.transport.http import participant_cookie
from consultd.transport.wire import Packet

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Connection:
    sid: str
    room: Room
    participant: Participant


Handler = Callable[[Connection, Any], Awaitable[dict[str, Any] | None]]


def create_server(
    max_message_bytes: int, max_queued: int, on_overflow: Callable[[], None]
) -> AsyncServer:
    return AsyncServer(
        async_mode="aiohttp",
        serializer=Packet,
        # Same-origin only: the browser client is served by this server.
        cors_allowed_origins=[],
        ping_interval=10,
        ping_timeout=5,
        max_http_buffer_size=max_message_bytes,
        transports=["websocket", "polling"],
        # Handle a client's events in its read loop, in order, rather than in a new task
        # per event: cheaper, and a client's chat messages are stored in the order sent.
        async_handlers=False,
        max_queued=max_queued,
        on_overflow=on_overflow,
        logger=False,
        engineio_logger=False,
    )


class Gateway:
    """The socket.io side of consultd; also the services' ``Notifier``."""

    def __init__(self, sio: AsyncServer) -> None:
        self.sio = sio
        self.services: Services
        self._conns: dict[str, Connection] = {}
        self._sid_of: dict[str, str] = {}  # participant id -> current socket id
        self._events_per_socket = RateLimiter("socket events", rate=50, burst=100)
        self._handlers: dict[str, tuple[type[BaseModel], Handler]] = {}
        self.shutting_down = False

    def bind(self, services: Services) -> None:
        self.services = services
        sio = self.sio
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_unknown)
        self._register("chat", s.ChatIn, self._chat)
        self._register("admit", s.TargetIn, self._admit)
        self._register("reject", s.TargetIn, self._reject)
        self._register("remove", s.TargetIn, self._remove)
        self._register("transfer_host", s.TargetIn, self._transfer_host)
        self._register("set_lobby", s.LobbyIn, self._set_lobby)
        self._register("end", s.Empty, self._end)
        self._register("leave", s.Empty, self._leave)
        self._register("y", s.YIn, self._y)
        self._register("viewer", s.ViewerIn, self._viewer)
        self._register("media_join", s.Empty, self._media_join)
        self._register("media_offer", s.MediaOfferIn, self._media_offer)
        self._register("media_candidate", s.MediaCandidateIn, self._media_candidate)
        self._register("media_mute", s.MediaMuteIn, self._media_mute)
        self._register("media_leave", s.Empty, self._media_leave)

    def open_sockets(self) -> int:
        return len(self._conns)

    # -- Notifier ---------------------------------------------------------------------------

    def broadcast(self, room_id: str, event: str, data: Any, *, exclude: str | None = None) -> None:
        skip = self._sid_of.get(exclude) if exclude is not None else None
        members = self.sio.manager.get_participants("/", room_id)
        emit_to(self.sio, (eio for sid, eio in members if sid != skip), event, data)

    def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        sid = self._sid_of.get(participant_id)
        if sid is not None:
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
            if eio_sid is not None:
                emit_to(self.sio, (eio_sid,), event, data)

    async def enter(self, room_id: str, participant_id: str) -> None:
        sid = self._sid_of.get(participant_id)
        if sid is not None:
            await self.sio.enter_room(sid, room_id)

    async def disconnect(self, room_id: str, participant_id: str) -> None:
        sid = self._sid_of.pop(participant_id, None)
        if sid is not None:
            self._conns.pop(sid, None)
            pending = after_ack.get()
            if pending is not None:  # inside an event: close after its ack is queued
                pending.append(lambda: self.sio.disconnect(sid))
            else:
                await self.sio.disconnect(sid)

    # -- connection -------------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        from socketio.exceptions import ConnectionRefusedError

        try:
            if self.shutting_down:
                raise Unavailable("the server is shutting down; reconnect shortly")
            try:
                a = s.SioAuth.model_validate(auth if isinstance(auth, dict) else {})
            except ValidationError as exc:
                raise BadRequest("auth must be {room, token?, since?}") from exc
            token = a.token or _cookie(environ, participant_cookie(a.room))
            if not token:
                raise Unauthorized("join the room first (share code or invitation)")
            room, p = await self.services.rooms.participant_for_token(a.room, token)
            if not room.is_open:
                from consultd.errors import Gone

                raise Gone("the room has ended")
        except ConsultdError as exc:
            # (message, data): socket.io clients see err.message and err.data = {code, message}.
            raise ConnectionRefusedError(
                exc.message, {"code": exc.code, "message": exc.message}
            ) from None
        old = self._sid_of.get(p.id)
        if old is not None:  # the same participant again (a new tab, a reconnect): replace
            self._conns.pop(old, None)
            spawn(self.sio.disconnect(old))
        conn = Connection(sid, room, p)
        self._conns[sid] = conn
        self._sid_of[p.id] = sid
        # After this handler returns the CONNECT packet goes out; lobby/joined follow it.
        spawn(self._after_connect(conn, a.since))

    async def _after_connect(self, conn: Connection, since: int | None) -> None:
        try:
            await self.services.rooms.connected(conn.room, conn.participant, since)
        except ConsultdError as exc:
            await self.sio.emit(
                "error", {"code": exc.code, "message": exc.message, "event": "connect"}, to=conn.sid
            )
            self._forget(conn)
            await self.sio.disconnect(conn.sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._conns.pop(sid, None)
        if conn is None:
            return  # replaced or removed: nothing to do
        self._forget(conn)
        if self.shutting_down:
            return
        await self.services.rooms.disconnected(conn.room, conn.participant)

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.sid, None)
        if self._sid_of.get(conn.participant.id) == conn.sid:
            del self._sid_of[conn.participant.id]

    # -- events -----------------------------------------------------------------------------

    def _register(self, event: str, model: type[BaseModel], handler: Handler) -> None:
        self._handlers[event] = (model, handler)

        async def on_event(sid: str, *args: Any) -> dict[str, Any] | None:
            return await self._dispatch(event, sid, args)

        self.sio.on_direct(event, on_event)

    async def _dispatch(self, event: str, sid: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        model, handler = self._handlers[event]
        try:
            conn = self._conns.get(sid)
            if conn is None:
                raise Unauthorized("not connected to a room")
            self._events_per_socket.hit(sid)
            if len(args) > 1:
                raise BadRequest("send one payload object")
            try:
                payload = model.model_validate(args[0] if args else {})
            except ValidationError as exc:
                raise ValidationFailed(
                    "invalid payload",
                    details=[
                        {"loc": [str(x) for x in e["loc"]], "msg": e["msg"]}
                        for e in exc.errors(include_url=False, include_input=False)
                    ],
                ) from None
            result = await handler(conn, payload)
            reply: dict[str, Any] = {"ok": True}
            if result:
                reply.update(result)
        except ConsultdError as exc:
            self.services.metrics.errors.labels(exc.code).inc()
            reply = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
            if not ack_requested.get():
                await self.sio.emit(
                    "error", {"code": exc.code, "message": exc.message, "event": event}, to=sid
                )
        self.services.metrics.observe(event, time.perf_counter() - t0)
        return reply

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        err = {"code": "bad_request", "message": "unknown event"}
        if not ack_requested.get():
            await self.sio.emit("error", {**err, "event": str(event)[:64]}, to=sid)
        return {"ok": False, "error": err}

    async def _chat(self, conn: Connection, p: s.ChatIn) -> dict[str, Any]:
        msg = await self.services.chat.post(conn.participant, conn.room, p.id, p.text)
        return {"message": msg.to_wire()}

    async def _admit(self, conn: Connection, p: s.TargetIn) -> None:
        await self.services.rooms.admit(conn.participant, conn.room, p.participant_id)

    async def _reject(self, conn: Connection, p: s.TargetIn) -> None:
        await self.services.rooms.reject(conn.participant, conn.room, p.participant_id)

    async def _remove(self, conn: Connection, p: s.TargetIn) -> None:
        await self.services.rooms.remove(conn.participant, conn.room, p.participant_id)

    async def _transfer_host(self, conn: Connection, p: s.TargetIn) -> None:
        await self.services.rooms.transfer_host(conn.participant, conn.room, p.participant_id)

    async def _set_lobby(self, conn: Connection, p: s.LobbyIn) -> None:
        await self.services.rooms.set_lobby(conn.participant, conn.room, p.enabled)

    async def _end(self, conn: Connection, p: s.Empty) -> None:
        await self.services.rooms.end_by_participant(conn.participant, conn.room)

    async def _y(self, conn: Connection, p: s.YIn) -> None:
        await self.services.annotations.message(conn.participant, conn.room, p.doc, p.data)

    async def _viewer(self, conn: Connection, p: s.ViewerIn) -> None:
        view = p.view.model_dump() if p.view is not None else None
        await self.services.imaging.present(conn.participant, conn.room, p.follow, view)

    async def _media_join(self, conn: Connection, p: s.Empty) -> dict[str, Any]:
        return await self.services.calls.join(conn.participant, conn.room)

    async def _media_offer(self, conn: Connection, p: s.MediaOfferIn) -> dict[str, Any]:
        return await self.services.calls.offer(conn.participant, conn.room, p.sdp, p.sources)

    async def _media_candidate(self, conn: Connection, p: s.MediaCandidateIn) -> None:
        await self.services.calls.candidate(
            conn.participant, conn.room, p.candidate, p.sdp_mid, p.sdp_mline_index
        )

    async def _media_mute(self, conn: Connection, p: s.MediaMuteIn) -> None:
        await self.services.calls.mute(conn.participant, conn.room, p.source, p.muted)

    async def _media_leave(self, conn: Connection, p: s.Empty) -> None:
        await self.services.calls.leave(conn.participant, conn.room)

    async def _leave(self, conn: Connection, p: s.Empty) -> None:
        await self.services.rooms.leave(conn.participant, conn.room)
        # Close the socket once the ack (sent when this handler returns) is queued.
        loop = asyncio.get_running_loop()
        loop.call_soon(
            lambda: asyncio.ensure_future(self.disconnect(conn.room.id, conn.participant.id))
        )

    async def shutdown(self) -> None:
        """Tell every client, then close every socket (they reconnect to the next server)."""
        self.shutting_down = True
        await self.sio.emit("server_shutdown", {"reconnect_after_s": 2})
        await close_all(self.sio)
        self._conns.clear()
        self._sid_of.clear()


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    raw = environ.get("HTTP_COOKIE")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None
