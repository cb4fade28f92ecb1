"""The room's fan-out: at once while quiet, coalesced per tick under load."""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import Doc, Map

from annotations.sync import (
    AwarenessEntry,
    MessageKind,
    parse_awareness,
    parse_message,
)
from consultd.annotate.service import IMMEDIATE_PER_TICK, POINTER_TICK_S, TICK_S, _Outbox
from consultd.loopload import MAX_STRETCH, LoopLoad


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str | None]] = []

    def broadcast(self, room_id: str, event: str, data: Any, *, exclude: str | None = None) -> None:
        self.sent.append((data["doc"], data["data"], exclude))

    def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        raise AssertionError("the outbox only broadcasts")


def _stroke_updates(n: int, key: str = "s1") -> tuple[Doc[Any], list[bytes]]:
    doc: Doc[Any] = Doc()
    amap: Map[Any] = doc.get("annotations", type=Map)
    updates = []
    for i in range(n):
        sv = doc.get_state()
        amap[key] = {"i": float(i)}
        updates.append(doc.get_update(sv))
    return doc, updates


async def test_quiet_rooms_send_at_once_busy_ones_merge_per_sender_and_tick() -> None:
    rec = Recorder()
    box = _Outbox(rec, "r1")  # type: ignore[arg-type]
    _, alice = _stroke_updates(6)
    _, bob = _stroke_updates(3, "s2")
    for u in alice:
        box.update("img", u, "alice")
    for u in bob:
        box.update("img", u, "bob")
    assert len(rec.sent) == IMMEDIATE_PER_TICK, "the first messages of a tick go at once"
    await asyncio.sleep(TICK_S * 3)
    merged = rec.sent[IMMEDIATE_PER_TICK:]
    assert [x for _, _, x in merged] == ["alice", "bob"], "one merged update per sender"
    # What each receiver gets adds up to every update.
    receiver: Doc[Any] = Doc()
    rmap: Map[Any] = receiver.get("annotations", type=Map)
    for _, data, _ in rec.sent:
        receiver.apply_update(parse_message(data).payload)
    assert rmap.to_py() == {"s1": {"i": 5.0}, "s2": {"i": 2.0}}
    # A quiet tick later, the room sends at once again.
    await asyncio.sleep(TICK_S * 2)
    before = len(rec.sent)
    box.update("img", _stroke_updates(1, "s3")[1][0], "carol")
    assert len(rec.sent) == before + 1
    box.close()


async def test_pointers_coalesce_to_each_clients_newest_state() -> None:
    rec = Recorder()
    box = _Outbox(rec, "r1")  # type: ignore[arg-type]
    for clock in range(1, 11):
        for client in (1, 2, 3):
            state = b'{"x":' + str(clock).encode() + b"}"
            box.awareness_entries("img", [AwarenessEntry(client, clock, state)], f"p{client}")
    await asyncio.sleep(POINTER_TICK_S * 3)
    assert len(rec.sent) == 2, "one pointer at once, then the tick's newest states"
    doc_id, data, exclude = rec.sent[-1]
    msg = parse_message(data)
    assert doc_id == "img" and exclude is None and msg.kind is MessageKind.AWARENESS
    newest = parse_awareness(msg.payload)
    assert sorted(newest, key=lambda e: e.client) == [
        AwarenessEntry(c, 10, b'{"x":10}') for c in (1, 2, 3)
    ]
    box.close()


async def test_a_chance_burst_does_not_keep_a_steady_room_coalescing() -> None:
    """A room at about one update per tick: a chance burst of three makes the third wait
    for the tick; the updates after it go out at once again. (Before: the room stayed in
    coalescing for as long as every tick had an update, each waiting up to a tick.)"""
    rec = Recorder()
    box = _Outbox(rec, "r1")  # type: ignore[arg-type]
    _, updates = _stroke_updates(3 + 8)
    for u in updates[:3]:
        box.update("img", u, "alice")
    assert len(rec.sent) == IMMEDIATE_PER_TICK
    await asyncio.sleep(TICK_S * 1.5)
    assert len(rec.sent) == 3, "the third went out at the tick's end"
    for u in updates[3:]:
        before = len(rec.sent)
        box.update("img", u, "alice")
        assert len(rec.sent) == before + 1, "steady again: sent at once"
        await asyncio.sleep(TICK_S * 1.1)
    box.close()


async def test_a_busy_room_keeps_coalescing_tick_after_tick() -> None:
    rec = Recorder()
    box = _Outbox(rec, "r1")  # type: ignore[arg-type]
    _, updates = _stroke_updates(4 * 6)
    for tick in range(4):
        for u in updates[tick * 6 : tick * 6 + 6]:
            box.update("img", u, "alice")
        await asyncio.sleep(TICK_S * 1.2)
    # The first tick: two at once, the rest merged; later ticks: all merged, one each.
    assert len(rec.sent) == IMMEDIATE_PER_TICK + 4
    box.close()


async def test_pointers_wait_longer_while_the_event_loop_is_busy() -> None:
    """Updates keep their tick; pointers (newest state wins) stretch theirs with the load."""
    rec = Recorder()
    load = LoopLoad()
    box = _Outbox(rec, "r1", load)  # type: ignore[arg-type]
    pointer = [AwarenessEntry(7, 1, b'{"pointer":{"x":1,"y":2}}')]
    box.awareness_entries("img", pointer, "alice")
    assert box.pointers.tick_s == POINTER_TICK_S
    load.busy = 0.99
    box.awareness_entries("img", pointer, "alice")  # waits for the tick: it is stretched
    assert box.pointers.tick_s == POINTER_TICK_S * MAX_STRETCH
    await asyncio.sleep(POINTER_TICK_S * 1.5)
    assert len(rec.sent) == 1, "a calm tick would have flushed by now"
    await asyncio.sleep(POINTER_TICK_S * MAX_STRETCH)
    assert len(rec.sent) == 2
    _, updates = _stroke_updates(1)
    box.update("img", updates[0], "alice")
    assert len(rec.sent) == 3, "an update in a quiet room still goes at once"
    box.close()
