"""The consult room's live state: pure data, no I/O.

A ``Room`` owns its participants and chat sequence, and holds the room-scoped components
that later modules attach (the media router, the annotation document, shared images):
each is a ``RoomComponent`` closed when the room ends or unloads.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Role(StrEnum):
    HOST = "host"
    PARTICIPANT = "participant"
    OBSERVER = "observer"


class State(StrEnum):
    LOBBY = "lobby"
    #: Admitted (or invited) but not connected yet.
    ADMITTED = "admitted"
    JOINED = "joined"
    RECONNECTING = "reconnecting"
    LEFT = "left"
    REMOVED = "removed"
    REJECTED = "rejected"


#: States in which a participant may open a socket.
CAN_CONNECT = frozenset({State.LOBBY, State.ADMITTED, State.JOINED, State.RECONNECTING, State.LEFT})
#: States shown in the room's participant list.
PRESENT = frozenset({State.JOINED, State.RECONNECTING})


class RoomStatus(StrEnum):
    OPEN = "open"
    ENDED = "ended"


class RoomComponent(Protocol):
    """Something a room owns (a media router, an annotation document): closed with it.

    It may also define ``participant_joined(participant_id)`` (called after the
    participant got ``joined``: send them what they need to catch up),
    ``async participant_disconnected(participant_id)`` (the
    participant's socket went away; they may come back within the grace period) and
    ``async participant_left(participant_id)`` (removed, or left for good: release what they
    held) and ``async participant_role_changed(participant_id)``.
    """

    async def close(self) -> None: ...


@dataclass(slots=True)
class Participant:
    id: str
    room_id: str
    name: str
    role: Role
    state: State
    user_id: str | None = None
    specialty: str | None = None
    #: SHA-256 of the participant's current token (never sent anywhere).
    token_hash: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "state": self.state.value,
            "user_id": self.user_id,
            "specialty": self.specialty,
        }


@dataclass(slots=True)
class ChatMessage:
    id: str
    seq: int
    room_id: str
    author_id: str
    author_name: str
    text: str
    ts: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "room_id": self.room_id,
            "author_id": self.author_id,
            "author_name": self.author_name,
            "text": self.text,
            "ts": self.ts,
        }


#: Client ids remembered per room to answer retried sends without a database read.
RECENT_CHAT_IDS = 4096


@dataclass(slots=True)
class Room:
    id: str
    title: str
    summary: str
    lobby: bool
    status: RoomStatus
    host_user_id: str
    created_at: float
    participants: dict[str, Participant] = field(default_factory=dict)
    #: The next chat sequence number (1-based, gaps allowed).
    next_seq: int = 1
    #: The newest chat messages by client id, in seq order (answers retries and joins).
    recent_chat: OrderedDict[str, ChatMessage] = field(default_factory=OrderedDict)
    #: True while ``recent_chat`` holds every message the room ever had.
    chat_all_in_memory: bool = True
    #: Client id -> the send in flight, so that a retry waits for it instead of storing twice.
    pending_chat: dict[str, asyncio.Future[ChatMessage]] = field(default_factory=dict)
    #: Participants with a live socket.
    connected: set[str] = field(default_factory=set)
    #: token hash -> participant id: a socket connects without a database read.
    by_token: dict[str, str] = field(default_factory=dict)
    #: participant id -> timer that turns ``reconnecting`` into ``left``.
    grace_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    components: dict[str, RoomComponent] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status is RoomStatus.OPEN

    @property
    def idle(self) -> bool:
        return not self.connected and not self.grace_timers and not self.pending_chat

    def host(self) -> Participant | None:
        for p in self.participants.values():
            if p.role is Role.HOST and p.state not in (State.REMOVED, State.REJECTED):
                return p
        return None

    def set_token(self, p: Participant, new_hash: str | None) -> None:
        if p.token_hash is not None:
            self.by_token.pop(p.token_hash, None)
        p.token_hash = new_hash
        if new_hash is not None:
            self.by_token[new_hash] = p.id

    def remember_chat(self, message: ChatMessage) -> None:
        self.recent_chat[message.id] = message
        if len(self.recent_chat) > RECENT_CHAT_IDS:
            self.recent_chat.popitem(last=False)
            self.chat_all_in_memory = False

    def history_in_memory(self, since: int, limit: int) -> tuple[list[ChatMessage], bool] | None:
        """Messages with ``seq > since`` (the newest ``limit``) and whether that is all of
        them, or ``None`` when memory does not reach back far enough."""
        if not self.recent_chat:
            return ([], True) if self.chat_all_in_memory or since >= self.next_seq - 1 else None
        oldest = next(iter(self.recent_chat.values())).seq
        if since < oldest - 1 and not self.chat_all_in_memory:
            return None
        newer = [m for m in reversed(self.recent_chat.values()) if m.seq > since]
        if len(newer) > limit:
            return list(reversed(newer[:limit])), False
        return list(reversed(newer)), True

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def to_wire(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        return {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "lobby": self.lobby,
            "status": self.status.value,
            "host_user_id": self.host_user_id,
            "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat(),
            "link": f"/r/{self.id}",
        }

    async def close_components(self) -> None:
        components, self.components = self.components, {}
        for c in components.values():
            await c.close()
        for t in self.grace_timers.values():
            t.cancel()
        self.grace_timers.clear()
