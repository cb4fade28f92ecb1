"""``authorize(participant, room, action)``: the only place that decides who may do what."""

from __future__ import annotations

from enum import StrEnum

from consultd.errors import Forbidden, Gone
from consultd.rooms.room import Participant, Role, Room, State


class Action(StrEnum):
    CHAT = "chat"
    DRAW = "draw"
    ADMIT = "admit"
    REJECT = "reject"
    REMOVE = "remove"
    TRANSFER_HOST = "transfer_host"
    SET_LOBBY = "set_lobby"
    END = "end"
    LEAVE = "leave"
    VIEW = "view"


_ANY = frozenset(Role)
_HOST = frozenset({Role.HOST})

RULES: dict[Action, frozenset[Role]] = {
    Action.CHAT: frozenset({Role.HOST, Role.PARTICIPANT}),
    Action.DRAW: frozenset({Role.HOST, Role.PARTICIPANT}),
    Action.ADMIT: _HOST,
    Action.REJECT: _HOST,
    Action.REMOVE: _HOST,
    Action.TRANSFER_HOST: _HOST,
    Action.SET_LOBBY: _HOST,
    Action.END: _HOST,
    Action.LEAVE: _ANY,
    Action.VIEW: _ANY,
}


def authorize(participant: Participant, room: Room, action: Action) -> None:
    """Raise unless ``participant`` may perform ``action`` in ``room`` now."""
    if not room.is_open:
        raise Gone("the room has ended")
    if participant.room_id != room.id:
        raise Forbidden("not a participant of this room")
    if participant.state is not State.JOINED and action is not Action.LEAVE:
        raise Forbidden("you are not in the room yet")
    if participant.role not in RULES[action]:
        raise Forbidden(f"a {participant.role.value} cannot {action.value.replace('_', ' ')}")
