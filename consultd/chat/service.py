"""Chat: persisted before acknowledged, once per client id, in sequence order.

Sends are group-committed: one writer task takes every message queued since its last
transaction and stores them in one ``INSERT … ON CONFLICT DO NOTHING``. Only then are
they broadcast (in sequence order) and acknowledged, so an acknowledged message is on
disk and nobody sees a message that could still be lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from consultd.errors import Conflict, Unavailable
from consultd.ids import now_ms
from consultd.ratelimit import RateLimiter
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize
from consultd.rooms.room import ChatMessage, Participant, Room
from consultd.store.tables import chat_messages
from consultd.store.unit import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    room: Room
    message: ChatMessage
    done: asyncio.Future[ChatMessage]


class ChatService:
    def __init__(self, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier
        self.per_participant = RateLimiter("chat", rate=2.0, burst=10)
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._insert = store.db.insert_ignoring_conflicts(chat_messages).returning(
            chat_messages.c.room_id, chat_messages.c.seq
        )

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="chat-writer")

    async def post(self, author: Participant, room: Room, client_id: str, text: str) -> ChatMessage:
        authorize(author, room, Action.CHAT)
        known = room.recent_chat.get(client_id)
        if known is None:
            in_flight = room.pending_chat.get(client_id)
            if in_flight is not None:
                known = await asyncio.shield(in_flight)
        if known is not None:
            if known.author_id != author.id:
                raise Conflict("this message id is taken")
            return known  # a retry: stored once, acknowledged again
        if self._closing:
            raise Unavailable("the server is shutting down; send again after reconnecting")
        self.per_participant.hit(author.id)
        msg = ChatMessage(
            client_id, room.take_seq(), room.id, author.id, author.name, text, now_ms()
        )
        fut: asyncio.Future[ChatMessage] = asyncio.get_running_loop().create_future()
        room.pending_chat[client_id] = fut
        self._queue.append(_Pending(room, msg, fut))
        self._wake.set()
        try:
            stored = await asyncio.shield(fut)
        finally:
            room.pending_chat.pop(client_id, None)
        if stored.author_id != author.id:
            raise Conflict("this message id is taken")
        return stored

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit(batch)
            elif self._closing:
                return

    async def _commit(self, batch: list[_Pending]) -> None:
        rows = [
            {
                "room_id": p.message.room_id,
                "seq": p.message.seq,
                "client_id": p.message.id,
                "author_id": p.message.author_id,
                "author_name": p.message.author_name,
                "text": p.message.text,
                "ts": p.message.ts,
            }
            for p in batch
        ]
        try:
            async with self.store.db.write() as conn:
                inserted = {(r.room_id, r.seq) for r in await conn.execute(self._insert, rows)}
                stale = [p for p in batch if (p.message.room_id, p.message.seq) not in inserted]
                originals = {}
                for p in stale:  # a retry of a message older than memory: answer the original
                    r = (
                        await conn.execute(
                            sa.select(chat_messages).where(
                                chat_messages.c.room_id == p.message.room_id,
                                chat_messages.c.client_id == p.message.id,
                            )
                        )
                    ).first()
                    if r is not None:
                        originals[id(p)] = ChatMessage(
                            r.client_id, r.seq, r.room_id, r.author_id, r.author_name, r.text, r.ts
                        )
        except Exception as exc:
            log.exception("storing %d chat messages failed", len(batch))
            err = Unavailable("the message could not be stored; send it again")
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(err)
                    p.done.exception()
            del exc
            return
        for p in batch:
            original = originals.get(id(p))
            if original is not None:
                p.done.set_result(original)
                continue
            p.room.remember_chat(p.message)
            self.notifier.broadcast(
                p.room.id, "chat", p.message.to_wire(), exclude=p.message.author_id
            )
            p.done.set_result(p.message)

    async def close(self) -> None:
        """Store everything queued, then stop (graceful shutdown)."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
