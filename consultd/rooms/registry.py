"""Room id -> live ``Room``: loaded from the store on first use, unloaded when idle.

One process owns each room's live state (room affinity). ``Directory`` is where that
ownership is claimed: a single process claims every room; scale-out replaces it with a
Redis-backed directory without touching the services.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import sqlalchemy as sa

from consultd.errors import NotFound
from consultd.rooms.room import (
    RECENT_CHAT_IDS,
    ChatMessage,
    Participant,
    Role,
    Room,
    RoomStatus,
    State,
)
from consultd.store.tables import chat_messages, participants, rooms
from consultd.store.unit import Store


class Directory(Protocol):
    async def claim(self, room_id: str) -> None:
        """Become the owner of ``room_id`` or raise (the room lives elsewhere)."""

    async def release(self, room_id: str) -> None: ...


class LocalDirectory:
    """The single-process directory: this process owns every room."""

    async def claim(self, room_id: str) -> None:
        return None

    async def release(self, room_id: str) -> None:
        return None


class RoomRegistry:
    def __init__(self, store: Store, directory: Directory | None = None) -> None:
        self.store = store
        self.directory: Directory = directory or LocalDirectory()
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}

    def loaded(self) -> list[Room]:
        return list(self._rooms.values())

    def peek(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    async def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is not None:
            return room
        pending = self._loading.get(room_id)
        if pending is not None:  # a join storm loads a room once
            return await asyncio.shield(pending)
        fut: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._loading[room_id] = fut
        try:
            room = await self._load(room_id)
            self._rooms[room_id] = room
            fut.set_result(room)
            return room
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[room_id]

    async def _load(self, room_id: str) -> Room:
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(rooms).where(rooms.c.id == room_id))).first()
            if row is None:
                raise NotFound("no such room")
            await self.directory.claim(room_id)
            room = Room(
                id=row.id,
                title=row.title,
                summary=row.summary,
                lobby=row.lobby,
                status=RoomStatus(row.status),
                host_user_id=row.host_user_id,
                created_at=row.created_at,
            )
            for p in await conn.execute(
                sa.select(participants).where(participants.c.room_id == room_id)
            ):
                state = State(p.state)
                if state in (State.JOINED, State.RECONNECTING):
                    state = State.LEFT  # sockets did not survive the restart
                participant = Participant(
                    p.id, room_id, p.name, Role(p.role), state, p.user_id, p.specialty
                )
                room.participants[p.id] = participant
                room.set_token(participant, p.token_hash)
            newest = (
                await conn.execute(
                    sa.select(chat_messages)
                    .where(chat_messages.c.room_id == room_id)
                    .order_by(chat_messages.c.seq.desc())
                    .limit(RECENT_CHAT_IDS)
                )
            ).all()
            for m in reversed(newest):
                room.recent_chat[m.client_id] = ChatMessage(
                    m.client_id, m.seq, room_id, m.author_id, m.author_name, m.text, m.ts
                )
            room.chat_all_in_memory = len(newest) < RECENT_CHAT_IDS
            room.next_seq = (newest[0].seq if newest else 0) + 1
        return room

    async def unload(self, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is not None:
            await room.close_components()
            await self.directory.release(room_id)

    async def unload_if_idle(self, room: Room) -> None:
        """Drop a room nobody is connected to (its state is all in the store)."""
        if self._rooms.get(room.id) is room and room.idle:
            await self.unload(room.id)

    async def close(self) -> None:
        for room_id in list(self._rooms):
            await self.unload(room_id)
