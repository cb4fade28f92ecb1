"""How services reach connected clients, without knowing the transport.

``broadcast`` and ``send`` return at once: each client's copy is written to its socket or
queued for it, in order, and a client too slow to take it is cut off and resyncs.
"""

from __future__ import annotations

from typing import Any, Protocol


class Notifier(Protocol):
    def broadcast(self, room_id: str, event: str, data: Any, *, exclude: str | None = None) -> None:
        """To every participant in the room (joined sockets), minus ``exclude``."""

    def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        """To one participant's socket, if connected."""

    async def enter(self, room_id: str, participant_id: str) -> None:
        """Move a participant's socket from the lobby into the room's broadcasts."""

    async def disconnect(self, room_id: str, participant_id: str) -> None:
        """Close a participant's socket, if connected."""
