"""How services reach connected clients, without knowing the transport."""

from __future__ import annotations

from typing import Any, Protocol


class Notifier(Protocol):
    async def broadcast(
        self, room_id: str, event: str, data: Any, *, exclude: str | None = None
    ) -> None:
        """To every participant in the room (joined sockets), minus ``exclude``."""

    async def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        """To one participant's socket, if connected."""

    async def enter(self, room_id: str, participant_id: str) -> None:
        """Move a participant's socket from the lobby into the room's broadcasts."""

    async def disconnect(self, room_id: str, participant_id: str) -> None:
        """Close a participant's socket, if connected."""
