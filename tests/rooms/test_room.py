from __future__ import annotations

from consultd.rooms.room import RECENT_CHAT_IDS, ChatMessage, Room, RoomStatus


def _room() -> Room:
    return Room("r" * 32, "t", "", True, RoomStatus.OPEN, "u", 0.0)


def _msg(room: Room) -> ChatMessage:
    seq = room.take_seq()
    return ChatMessage(f"c{seq}", seq, room.id, "a", "A", "x", 0)


def test_history_from_memory_and_when_memory_is_not_enough() -> None:
    room = _room()
    assert room.history_in_memory(0, 10) == ([], True)
    for _ in range(30):
        room.remember_chat(_msg(room))
    msgs, complete = room.history_in_memory(0, 10)
    assert [m.seq for m in msgs] == list(range(21, 31)) and not complete
    msgs, complete = room.history_in_memory(25, 10)
    assert [m.seq for m in msgs] == [26, 27, 28, 29, 30] and complete
    for _ in range(RECENT_CHAT_IDS):
        room.remember_chat(_msg(room))
    assert not room.chat_all_in_memory
    assert room.history_in_memory(0, 10) is None, "older than memory: the store answers"
    assert room.history_in_memory(room.next_seq - 5, 10) is not None
