"""Room operations: creation, share codes, invitations, admission, presence, hosting.

Every operation checks the actor's rights (``policy.authorize`` for participants, the
room's host for physicians' HTTP calls), persists, audits, then notifies sockets.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.auth import sharecodes
from consultd.auth.accounts import User
from consultd.errors import Conflict, Forbidden, Gone, Locked, NotFound, Unauthorized
from consultd.ids import new_id, new_token, now, token_hash
from consultd.ratelimit import RateLimiter
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize
from consultd.rooms.registry import RoomRegistry
from consultd.rooms.room import (
    CAN_CONNECT,
    PRESENT,
    ChatMessage,
    Participant,
    Role,
    Room,
    RoomStatus,
    State,
)
from consultd.store.tables import audit_events, chat_messages, participants, room_invites, rooms
from consultd.store.tables import share_codes as codes_t
from consultd.store.unit import Store
from consultd.tasks import spawn


@dataclass(frozen=True, slots=True)
class Admission:
    room_id: str
    participant_id: str
    token: str
    role: Role
    state: State

    def to_wire(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "participant_id": self.participant_id,
            "token": self.token,
            "role": self.role.value,
            "state": "lobby" if self.state is State.LOBBY else "admitted",
        }


# Statements on the join path, built once: constructing a SQLAlchemy statement per call
# (``.values(**kw)``, ``col == value``) cost more CPU than running it.
_CODE_BY_LOOKUP = sa.select(codes_t).where(
    codes_t.c.room_id == sa.bindparam("room_id"), codes_t.c.lookup == sa.bindparam("lookup")
)
_CLAIM_USE = (
    codes_t.update()
    .where(codes_t.c.id == sa.bindparam("code_id"), codes_t.c.uses < codes_t.c.max_uses)
    .values(uses=codes_t.c.uses + 1)
)
_INSERT_PARTICIPANT = participants.insert()
_SET_STATE = (
    participants.update()
    .where(participants.c.id == sa.bindparam("pid"))
    .values(state=sa.bindparam("state"))
)


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


def _code_wire(row: Any, code: str | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "role": row.role,
        "expires_at": _iso(row.expires_at),
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked": bool(row.revoked),
        "locked": row.failures >= sharecodes.MAX_FAILURES,
        "created_at": _iso(row.created_at),
    }
    if code is not None:
        out["code"] = code
    return out


class RoomService:
    def __init__(
        self,
        store: Store,
        registry: RoomRegistry,
        notifier: Notifier,
        *,
        secret_key: bytes,
        grace_s: float,
        history_limit: int,
    ) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self._key = secret_key
        self.grace_s = grace_s
        self.history_limit = history_limit
        self.redeem_per_ip = RateLimiter(
            "share code redemption per address", rate=10 / 60, burst=10
        )
        # Per room, all attempts: a tumour board of 50 joins within a minute; guessing is
        # bounded by the per-address limit and each code's lock after 10 wrong secrets.
        self.redeem_per_room = RateLimiter("share code redemption per room", rate=2.0, burst=120)

    # -- physicians (HTTP) ---------------------------------------------------------------

    async def create_room(self, user: User, *, title: str, summary: str, lobby: bool) -> Room:
        room_id = new_id()
        t = now()
        async with self.store.tx() as conn:
            await conn.execute(
                rooms.insert().values(
                    id=room_id,
                    title=title.strip(),
                    summary=summary.strip(),
                    lobby=lobby,
                    status=RoomStatus.OPEN.value,
                    host_user_id=user.id,
                    created_by=user.id,
                    created_at=t,
                )
            )
            await self.store.audit.record(
                conn, scope=room_id, actor=user.id, action="room.created", room_id=room_id
            )
        return await self.registry.get(room_id)

    async def rooms_of(self, user: User) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            invited = sa.select(room_invites.c.room_id).where(room_invites.c.email == user.email)
            rows = await conn.execute(
                sa.select(rooms.c.id)
                .where(sa.or_(rooms.c.host_user_id == user.id, rooms.c.id.in_(invited)))
                .order_by(rooms.c.created_at.desc())
                .limit(500)
            )
            ids = [r.id for r in rows]
        return [(await self.registry.get(i)).to_wire() for i in ids]

    async def room_for_user(self, user: User, room_id: str, *, host: bool = False) -> Room:
        """The room, if ``user`` is its host (or, unless ``host``, invited to it)."""
        room = await self.registry.get(room_id)
        if room.host_user_id == user.id:
            return room
        if not host and await self._invited(room_id, user.email):
            return room
        raise Forbidden("only the host can do this" if host else "you are not invited to this room")

    async def participant_for_token(self, room_id: str, token: str) -> tuple[Room, Participant]:
        room = await self.registry.get(room_id)
        pid = room.by_token.get(token_hash(token))
        p = room.participants.get(pid) if pid else None
        if p is None:
            raise Unauthorized("unknown or revoked participant token")
        return room, p

    async def update_room(
        self,
        user: User,
        room_id: str,
        *,
        title: str | None,
        summary: str | None,
        lobby: bool | None,
    ) -> Room:
        room = await self.room_for_user(user, room_id, host=True)
        self._require_open(room)
        values: dict[str, Any] = {}
        if title is not None:
            values["title"] = room.title = title.strip()
        if summary is not None:
            values["summary"] = room.summary = summary.strip()
        if lobby is not None:
            values["lobby"] = room.lobby = lobby
        if values:
            async with self.store.tx() as conn:
                await conn.execute(rooms.update().where(rooms.c.id == room.id).values(**values))
                await self.store.audit.record(
                    conn,
                    scope=room.id,
                    actor=user.id,
                    action="room.updated",
                    room_id=room.id,
                    detail={"fields": sorted(values)},
                )
            self.notifier.broadcast(room.id, "room", room.to_wire())
        return room

    async def create_code(
        self, user: User, room_id: str, *, role: Role, expires_in_s: int, max_uses: int
    ) -> dict[str, Any]:
        room = await self.room_for_user(user, room_id, host=True)
        self._require_open(room)
        if role is Role.HOST:
            raise Forbidden("a share code cannot grant the host role")
        t = now()
        for _ in range(5):  # the 25-bit lookup may collide within a room; draw again
            code, parsed = sharecodes.generate()
            row = {
                "id": new_id(),
                "room_id": room.id,
                "lookup": parsed.lookup,
                "secret_hash": sharecodes.secret_hash(self._key, parsed.secret),
                "role": role.value,
                "expires_at": t + expires_in_s,
                "max_uses": max_uses,
                "uses": 0,
                "failures": 0,
                "revoked": False,
                "created_by": user.id,
                "created_at": t,
            }
            try:
                async with self.store.tx() as conn:
                    await conn.execute(codes_t.insert().values(**row))
                    await self.store.audit.record(
                        conn,
                        scope=room.id,
                        actor=user.id,
                        action="code.created",
                        target=str(row["id"]),
                        room_id=room.id,
                        detail={"role": role.value, "max_uses": max_uses},
                    )
            except sa.exc.IntegrityError:
                continue
            return _code_wire(_Obj(row), code)
        raise Conflict("could not allocate a share code, try again")

    async def list_codes(self, user: User, room_id: str) -> list[dict[str, Any]]:
        room = await self.room_for_user(user, room_id, host=True)
        async with self.store.db.read() as conn:
            rows = await conn.execute(
                sa.select(codes_t)
                .where(codes_t.c.room_id == room.id)
                .order_by(codes_t.c.created_at)
            )
            return [_code_wire(r) for r in rows]

    async def revoke_code(self, user: User, room_id: str, code_id: str) -> None:
        room = await self.room_for_user(user, room_id, host=True)
        async with self.store.tx() as conn:
            done = await conn.execute(
                codes_t.update()
                .where(codes_t.c.id == code_id, codes_t.c.room_id == room.id)
                .values(revoked=True)
            )
            if done.rowcount == 0:
                raise NotFound("no such share code in this room")
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=user.id,
                action="code.revoked",
                target=code_id,
                room_id=room.id,
            )

    async def invite(self, user: User, room_id: str, email: str) -> None:
        """Invite a physician by e-mail (registered now or later); idempotent."""
        room = await self.room_for_user(user, room_id, host=True)
        self._require_open(room)
        email = email.strip().lower()
        async with self.store.tx() as conn:
            if await self._invited(room.id, email, conn):
                return
            await conn.execute(
                room_invites.insert().values(
                    room_id=room.id, email=email, invited_by=user.id, created_at=now()
                )
            )
            # The audit log names who invited, not the e-mail (an identifier of a person).
            await self.store.audit.record(
                conn, scope=room.id, actor=user.id, action="physician.invited", room_id=room.id
            )

    async def _invited(self, room_id: str, email: str, conn: Any = None) -> bool:
        q = sa.select(room_invites.c.email).where(
            room_invites.c.room_id == room_id, room_invites.c.email == email
        )
        if conn is not None:
            return (await conn.scalar(q)) is not None
        async with self.store.db.read() as c:
            return (await c.scalar(q)) is not None

    async def audit_events(self, user: User, room_id: str) -> list[dict[str, Any]]:
        room = await self.room_for_user(user, room_id, host=True)
        async with self.store.db.read() as conn:
            rows = await conn.execute(
                sa.select(audit_events)
                .where(audit_events.c.scope == room.id)
                .order_by(audit_events.c.seq)
                .limit(10_000)
            )
            return [
                {
                    "seq": r.seq,
                    "at": _iso(r.at),
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "room_id": r.room_id,
                    "detail": r.detail,
                }
                for r in rows
            ]

    # -- admission ------------------------------------------------------------------------

    async def join_as_physician(self, user: User, room_id: str) -> Admission:
        room = await self.room_for_user(user, room_id)
        self._require_open(room)
        role = Role.HOST if room.host_user_id == user.id else Role.PARTICIPANT
        existing = next(
            (
                p
                for p in room.participants.values()
                if p.user_id == user.id and p.state is not State.REMOVED
            ),
            None,
        )
        token = new_token()
        async with self.store.tx() as conn:
            if existing is None:
                p = Participant(
                    new_id(), room.id, user.name, role, State.ADMITTED, user.id, user.specialty
                )
                await self._insert_participant(conn, p, token, code_id=None)
            else:
                p = existing
                await conn.execute(
                    participants.update()
                    .where(participants.c.id == p.id)
                    .values(token_hash=token_hash(token))
                )
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=user.id,
                action="physician.joined",
                target=p.id,
                room_id=room.id,
            )
        room.participants[p.id] = p
        room.set_token(p, token_hash(token))
        return Admission(room.id, p.id, token, p.role, p.state)

    async def redeem(self, room_id: str, code_text: str, display_name: str, ip: str) -> Admission:
        self.redeem_per_ip.hit(ip)
        self.redeem_per_room.hit(room_id)
        room = await self.registry.get(room_id)
        self._require_open(room)
        parsed = sharecodes.parse(code_text)
        if parsed is None:
            raise Forbidden("this share code is not valid for this room")
        async with self.store.tx() as conn:
            row = (
                await conn.execute(_CODE_BY_LOOKUP, {"room_id": room.id, "lookup": parsed.lookup})
            ).first()
            if row is None:
                raise Forbidden("this share code is not valid for this room")
            if row.failures >= sharecodes.MAX_FAILURES:
                raise Locked("this share code is locked after too many wrong attempts")
            if not sharecodes.secret_matches(self._key, parsed.secret, row.secret_hash):
                await conn.execute(
                    codes_t.update()
                    .where(codes_t.c.id == row.id)
                    .values(failures=codes_t.c.failures + 1)
                )
                await self.store.audit.record(
                    conn,
                    scope=room.id,
                    actor="anonymous",
                    action="code.failed",
                    target=row.id,
                    room_id=room.id,
                )
                failed = Forbidden("this share code is not valid for this room")
            else:
                failed = None
                if row.revoked:
                    raise Gone("this share code was revoked")
                if row.expires_at <= now():
                    raise Gone("this share code has expired")
                claimed = await conn.execute(_CLAIM_USE, {"code_id": row.id})
                if claimed.rowcount == 0:
                    raise Gone("this share code has been used up")
                state = State.LOBBY if room.lobby else State.ADMITTED
                p = Participant(new_id(), room.id, display_name.strip(), Role(row.role), state)
                token = new_token()
                await self._insert_participant(conn, p, token, code_id=row.id)
                await self.store.audit.record(
                    conn,
                    scope=room.id,
                    actor=p.id,
                    action="code.redeemed",
                    target=row.id,
                    room_id=room.id,
                    detail={"role": p.role.value, "lobby": state is State.LOBBY},
                )
        if failed is not None:  # committed the failure count, then refuse
            raise failed
        room.participants[p.id] = p
        room.set_token(p, token_hash(token))
        return Admission(room.id, p.id, token, p.role, p.state)

    async def _insert_participant(
        self, conn: Any, p: Participant, token: str, *, code_id: str | None
    ) -> None:
        await conn.execute(
            _INSERT_PARTICIPANT,
            {
                "id": p.id,
                "room_id": p.room_id,
                "user_id": p.user_id,
                "name": p.name,
                "specialty": p.specialty,
                "role": p.role.value,
                "state": p.state.value,
                "token_hash": token_hash(token),
                "code_id": code_id,
                "created_at": now(),
            },
        )

    # -- sockets --------------------------------------------------------------------------

    async def connected(self, room: Room, p: Participant, since: int | None) -> None:
        """A socket for ``p`` is up (the transport already replaced any older one)."""
        if not room.is_open:
            raise Gone("the room has ended")
        if p.state not in CAN_CONNECT:
            raise Forbidden(f"you were {p.state.value}")
        room.connected.add(p.id)
        timer = room.grace_timers.pop(p.id, None)
        if timer is not None:
            timer.cancel()
        if p.state is State.LOBBY:
            self.notifier.send(
                room.id, p.id, "lobby", {"room_id": room.id, "participant": p.to_wire()}
            )
            await self._notify_host(room, p)
            return
        await self._enter(
            room,
            p,
            since,
            audit_action="participant.joined" if p.state is not State.RECONNECTING else None,
        )

    async def _enter(
        self, room: Room, p: Participant, since: int | None, *, audit_action: str | None
    ) -> None:
        was = p.state
        p.state = State.JOINED
        if was is not State.RECONNECTING:
            # Joins are the storm's hot path: their presence row and audit event join the
            # next group commit instead of a transaction each.
            self.store.later(self._state_job(room, p, State.JOINED, audit_action, actor=p.id))
        await self.notifier.enter(room.id, p.id)
        history, complete = await self.history(room, since)
        self.notifier.send(
            room.id,
            p.id,
            "joined",
            {
                "room": room.to_wire(),
                "self": p.to_wire(),
                "participants": [
                    q.to_wire() for q in room.participants.values() if q.state in PRESENT
                ],
                "history": [m.to_wire() for m in history],
                "history_complete": complete,
                "last_seq": room.next_seq - 1,
            },
        )
        if was is not State.JOINED:
            self.notifier.broadcast(room.id, "presence", p.to_wire(), exclude=p.id)
        for component in list(room.components.values()):
            on_join = getattr(component, "participant_joined", None)
            if on_join is not None:
                on_join(p.id)

    async def disconnected(self, room: Room, p: Participant) -> None:
        """The participant's (current) socket went away without ``leave``."""
        room.connected.discard(p.id)
        for component in list(room.components.values()):
            on_disconnect = getattr(component, "participant_disconnected", None)
            if on_disconnect is not None:
                await on_disconnect(p.id)
        if p.state is State.JOINED and room.is_open:
            p.state = State.RECONNECTING
            self.notifier.broadcast(room.id, "presence", p.to_wire(), exclude=p.id)
            loop = asyncio.get_running_loop()
            room.grace_timers[p.id] = loop.call_later(
                self.grace_s, lambda: spawn(self._grace_over(room, p))
            )
        else:
            await self.registry.unload_if_idle(room)

    async def _grace_over(self, room: Room, p: Participant) -> None:
        room.grace_timers.pop(p.id, None)
        if p.state is State.RECONNECTING:
            p.state = State.LEFT
            await self._persist_state(room, p, "participant.left", actor=p.id)
            self.notifier.broadcast(room.id, "presence", p.to_wire())
            await self._release(room, p.id)
        await self.registry.unload_if_idle(room)

    async def history(self, room: Room, since: int | None) -> tuple[list[ChatMessage], bool]:
        floor = since if since is not None and since >= 0 else 0
        cached = room.history_in_memory(floor, self.history_limit)
        if cached is not None:
            return cached
        async with self.store.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(chat_messages)
                    .where(chat_messages.c.room_id == room.id, chat_messages.c.seq > floor)
                    .order_by(chat_messages.c.seq.desc())
                    .limit(self.history_limit + 1)
                )
            ).all()
        complete = len(rows) <= self.history_limit
        msgs = [
            ChatMessage(r.client_id, r.seq, room.id, r.author_id, r.author_name, r.text, r.ts)
            for r in reversed(rows[: self.history_limit])
        ]
        return msgs, complete

    # -- host actions (socket) ------------------------------------------------------------

    def _target(self, room: Room, participant_id: str) -> Participant:
        target = room.participants.get(participant_id)
        if target is None:
            raise NotFound("no such participant in this room")
        return target

    async def admit(self, actor: Participant, room: Room, participant_id: str) -> None:
        authorize(actor, room, Action.ADMIT)
        target = self._target(room, participant_id)
        if target.state is not State.LOBBY:
            raise Conflict("this participant is not waiting in the lobby")
        target.state = State.ADMITTED
        await self._persist_state(room, target, "participant.admitted", actor=actor.id)
        if target.id in room.connected:
            await self._enter(room, target, None, audit_action=None)

    async def reject(self, actor: Participant, room: Room, participant_id: str) -> None:
        authorize(actor, room, Action.REJECT)
        target = self._target(room, participant_id)
        if target.state is not State.LOBBY:
            raise Conflict("this participant is not waiting in the lobby")
        await self._expel(
            room,
            target,
            State.REJECTED,
            "participant.rejected",
            actor,
            event="rejected",
            reason="the host declined your request",
        )

    async def remove(self, actor: Participant, room: Room, participant_id: str) -> None:
        authorize(actor, room, Action.REMOVE)
        target = self._target(room, participant_id)
        if target.id == actor.id:
            raise Conflict(
                "the host cannot remove themselves; hand the host role on or end the room"
            )
        if target.state in (State.REMOVED, State.REJECTED):
            raise Conflict(f"this participant was already {target.state.value}")
        await self._expel(
            room,
            target,
            State.REMOVED,
            "participant.removed",
            actor,
            event="removed",
            reason="the host removed you from the room",
        )

    async def _expel(
        self,
        room: Room,
        target: Participant,
        state: State,
        action: str,
        actor: Participant,
        *,
        event: str,
        reason: str,
    ) -> None:
        was_present = target.state in PRESENT
        target.state = state
        async with self.store.tx() as conn:
            await conn.execute(
                participants.update()
                .where(participants.c.id == target.id)
                .values(state=state.value, token_hash=None)
            )
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=actor.id,
                action=action,
                target=target.id,
                room_id=room.id,
            )
        room.set_token(target, None)
        timer = room.grace_timers.pop(target.id, None)
        if timer is not None:
            timer.cancel()
        # Room-scoped resources the participant held (media) close while their socket is
        # still there to hear it.
        await self._release(room, target.id)
        self.notifier.send(room.id, target.id, event, {"reason": reason})
        await self.notifier.disconnect(room.id, target.id)
        room.connected.discard(target.id)
        if was_present:
            self.notifier.broadcast(room.id, "presence", target.to_wire())
        else:
            await self._notify_host(room, target)

    async def transfer_host(self, actor: Participant, room: Room, participant_id: str) -> None:
        authorize(actor, room, Action.TRANSFER_HOST)
        target = self._target(room, participant_id)
        if target.id == actor.id:
            raise Conflict("you are already the host")
        if target.user_id is None:
            raise Forbidden("the host role can only go to a registered physician")
        if target.state not in PRESENT:
            raise Conflict("the new host must be in the room")
        actor.role, target.role = Role.PARTICIPANT, Role.HOST
        room.host_user_id = target.user_id
        async with self.store.tx() as conn:
            await conn.execute(
                participants.update()
                .where(participants.c.id == actor.id)
                .values(role="participant")
            )
            await conn.execute(
                participants.update().where(participants.c.id == target.id).values(role="host")
            )
            await conn.execute(
                rooms.update().where(rooms.c.id == room.id).values(host_user_id=target.user_id)
            )
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=actor.id,
                action="host.transferred",
                target=target.id,
                room_id=room.id,
            )
        self.notifier.broadcast(room.id, "presence", actor.to_wire())
        self.notifier.broadcast(room.id, "presence", target.to_wire())
        self.notifier.broadcast(room.id, "room", room.to_wire())
        for pid in (actor.id, target.id):
            for component in list(room.components.values()):
                on_role = getattr(component, "participant_role_changed", None)
                if on_role is not None:
                    await on_role(pid)
        for q in room.participants.values():  # the new host now sees the lobby
            if q.state is State.LOBBY:
                self.notifier.send(room.id, target.id, "presence", q.to_wire())

    async def set_lobby(self, actor: Participant, room: Room, enabled: bool) -> None:
        authorize(actor, room, Action.SET_LOBBY)
        room.lobby = enabled
        async with self.store.tx() as conn:
            await conn.execute(rooms.update().where(rooms.c.id == room.id).values(lobby=enabled))
            await self.store.audit.record(
                conn,
                scope=room.id,
                actor=actor.id,
                action="room.lobby",
                room_id=room.id,
                detail={"enabled": enabled},
            )
        self.notifier.broadcast(room.id, "room", room.to_wire())

    async def leave(self, actor: Participant, room: Room) -> None:
        authorize(actor, room, Action.LEAVE)
        timer = room.grace_timers.pop(actor.id, None)
        if timer is not None:
            timer.cancel()
        if actor.state in (State.JOINED, State.RECONNECTING, State.LOBBY):
            actor.state = State.LEFT
            await self._persist_state(room, actor, "participant.left", actor=actor.id)
            self.notifier.broadcast(room.id, "presence", actor.to_wire())
            await self._release(room, actor.id)

    async def end(self, room: Room, actor_id: str) -> Room:
        """End the room for everyone (host's socket event or HTTP call, checked by caller)."""
        self._require_open(room)
        room.status = RoomStatus.ENDED
        async with self.store.tx() as conn:
            await conn.execute(
                rooms.update().where(rooms.c.id == room.id).values(status="ended", ended_at=now())
            )
            await self.store.audit.record(
                conn, scope=room.id, actor=actor_id, action="room.ended", room_id=room.id
            )
        self.notifier.broadcast(room.id, "ended", room.to_wire())
        # Components close (media: every transport) while the sockets can still hear it.
        await self.registry.unload(room.id)
        for pid in list(room.connected):
            self.notifier.send(room.id, pid, "ended", room.to_wire())  # lobby sockets too
            await self.notifier.disconnect(room.id, pid)
        room.connected.clear()
        return room

    async def end_by_participant(self, actor: Participant, room: Room) -> None:
        authorize(actor, room, Action.END)
        await self.end(room, actor.id)

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _require_open(room: Room) -> None:
        if not room.is_open:
            raise Gone("the room has ended")

    async def _release(self, room: Room, participant_id: str) -> None:
        """The participant is gone for good (left, removed): components release what they
        held for them."""
        for component in list(room.components.values()):
            on_leave = getattr(component, "participant_left", None)
            if on_leave is not None:
                await on_leave(participant_id)

    async def _notify_host(self, room: Room, p: Participant) -> None:
        host = room.host()
        if host is not None and host.state is State.JOINED:
            self.notifier.send(room.id, host.id, "presence", p.to_wire())

    def _state_job(
        self, room: Room, p: Participant, state: State, action: str | None, *, actor: str
    ) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def job(conn: AsyncConnection) -> None:
            await conn.execute(_SET_STATE, {"pid": p.id, "state": state.value})
            if action is not None:
                await self.store.audit.record(
                    conn, scope=room.id, actor=actor, action=action, target=p.id, room_id=room.id
                )

        return job

    async def _persist_state(
        self, room: Room, p: Participant, action: str | None, *, actor: str
    ) -> None:
        async with self.store.tx() as conn:
            await conn.execute(_SET_STATE, {"pid": p.id, "state": p.state.value})
            if action is not None:
                await self.store.audit.record(
                    conn, scope=room.id, actor=actor, action=action, target=p.id, room_id=room.id
                )


class _Obj:
    """Attribute access over a dict (a just-inserted row)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def load_or_create_secret(path: os.PathLike[str] | str) -> bytes:
    """The server key for share-code HMACs, kept in the data dir (mode 600)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = os.urandom(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
