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
    SHARE_IMAGES = "share_images"
    PRESENT = "present"
    PUBLISH_MEDIA = "publish_media"


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
    Action.SHARE_IMAGES: frozenset({Role.HOST, Role.PARTICIPANT}),
    Action.PRESENT: frozenset({Role.HOST, Role.PARTICIPANT}),
    # Joining media and receiving it is ``VIEW``: observers watch and listen.
    Action.PUBLISH_MEDIA: frozenset({Role.HOST, Role.PARTICIPANT}),
}

#: States in which a participant's HTTP calls (images, DICOMweb) are served: past the
#: lobby, whether or not a socket is open right now.
ADMITTED = frozenset({State.ADMITTED, State.JOINED, State.RECONNECTING})


def role_may(role: Role, action: Action) -> bool:
    """Whether the role allows ``action`` at all (what a participant's state allows aside)."""
    return role in RULES[action]


def authorize(participant: Participant, room: Room, action: Action) -> None:
    """Raise unless ``participant`` may perform ``action`` in ``room`` now."""
    _check(participant, room, action, _JOINED)


def authorize_admitted(participant: Participant, room: Room, action: Action) -> None:
    """``authorize`` for HTTP calls, which need no open socket (``ADMITTED`` states)."""
    _check(participant, room, action, ADMITTED)


_JOINED = frozenset({State.JOINED})


def _check(participant: Participant, room: Room, action: Action, states: frozenset[State]) -> None:
    if not room.is_open:
        raise Gone("the room has ended")
    if participant.room_id != room.id:
        raise Forbidden("not a participant of this room")
    if participant.state not in states and action is not Action.LEAVE:
        raise Forbidden("you are not in the room yet")
    if participant.role not in RULES[action]:
        raise Forbidden(f"a {participant.role.value} cannot {action.value.replace('_', ' ')}")
