from __future__ import annotations

import pytest

from consultd.errors import Forbidden, Gone
from consultd.rooms.policy import RULES, Action, authorize
from consultd.rooms.room import Participant, Role, Room, RoomStatus, State


def _room() -> Room:
    return Room("r" * 32, "t", "", True, RoomStatus.OPEN, "u", 0.0)


def _p(role: Role, state: State = State.JOINED) -> Participant:
    return Participant("p", "r" * 32, "n", role, state)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_every_action_has_a_rule(action: Action, role: Role) -> None:
    room = _room()
    if role in RULES[action]:
        authorize(_p(role), room, action)
    else:
        with pytest.raises(Forbidden):
            authorize(_p(role), room, action)


def test_only_joined_participants_act_and_ended_rooms_refuse() -> None:
    room = _room()
    with pytest.raises(Forbidden):
        authorize(_p(Role.HOST, State.LOBBY), room, Action.CHAT)
    authorize(_p(Role.OBSERVER, State.RECONNECTING), room, Action.LEAVE)
    room.status = RoomStatus.ENDED
    with pytest.raises(Gone):
        authorize(_p(Role.HOST), room, Action.CHAT)


def test_observers_read_only() -> None:
    assert Role.OBSERVER not in RULES[Action.CHAT]
    assert RULES[Action.END] == frozenset({Role.HOST})
