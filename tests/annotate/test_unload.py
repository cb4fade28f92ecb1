"""An image nobody uses is unloaded from memory and comes back from its log unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pycrdt import Doc, Map

from annotations.sync import MessageKind, parse_message, sync_step1, update_message
from consultd.annotate import service as annotate
from consultd.annotate.service import COMPONENT, AnnotationService, RoomAnnotations
from consultd.rooms.room import Participant, Role, Room, RoomStatus, State
from consultd.store.db import Database
from consultd.store.tables import rooms, users
from consultd.store.unit import Store

UID = "1.2.840.99.7"


class Inbox:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def broadcast(self, room_id: str, event: str, data: Any, *, exclude: str | None = None) -> None:
        pass

    def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        self.sent.append(data["data"])


def _note(ident: str, author: str) -> dict[str, Any]:
    return {
        "id": ident,
        "author": author,
        "created": 1.0,
        "updated": 1.0,
        "kind": "point",
        "style": {"color": "#00ff00", "width": 2.0},
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1.0},
        "geometry": {"points": [[5.0, 5.0]]},
    }


@contextlib.asynccontextmanager
async def _service(
    tmp_path: Path, inbox: Inbox
) -> AsyncIterator[tuple[Database, Store, AnnotationService, Room, Participant]]:
    """A store with one user and room ``r1``, the service on it, and participant ``p1``
    joined; the room's components and the store are closed on the way out."""
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    await db.migrate()
    store = Store(db)
    async with store.tx() as conn:
        await conn.execute(
            users.insert(),
            {"id": "u1", "email": "u@example.org", "name": "U", "password_hash": "x",
             "specialty": "s", "country": "FR", "languages": [], "created_at": 0.0},
        )  # fmt: skip
        await conn.execute(
            rooms.insert(),
            {"id": "r1", "title": "t", "summary": "", "lobby": False, "status": "open",
             "host_user_id": "u1", "created_by": "u1", "created_at": 0.0},
        )  # fmt: skip
    svc = AnnotationService(store, inbox)  # type: ignore[arg-type]
    room = Room("r1", "t", "", False, RoomStatus.OPEN, "u1", 0.0)
    p = Participant("p1", "r1", "P", Role.PARTICIPANT, State.JOINED)
    room.participants[p.id] = p
    try:
        yield db, store, svc, room, p
    finally:
        await room.close_components()
        await store.close()
        await db.close()


async def test_idle_images_unload_and_reload_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(annotate, "DOC_IDLE_S", 0.05)
    monkeypatch.setattr(annotate, "SWEEP_EVERY_S", 0.05)
    inbox = Inbox()
    async with _service(tmp_path, inbox) as (_, _, svc, room, p):
        doc: Doc[Any] = Doc()
        amap: Map[Any] = doc.get("annotations", type=Map)
        amap["n1"] = _note("n1", "p1")
        await svc.message(p, room, "img:1", update_message(doc.get_update()))
        comp = room.components[COMPONENT]
        assert isinstance(comp, RoomAnnotations) and "img:1" in comp.docs
        deadline = asyncio.get_running_loop().time() + 5
        while comp.docs:
            assert asyncio.get_running_loop().time() < deadline, "the idle image stayed loaded"
            await asyncio.sleep(0.02)
        # Back from the log on the next use, with everything in it.
        await svc.message(p, room, "img:1", sync_step1(b"\x00"))
        step2 = parse_message(inbox.sent[0])
        assert step2.kind is MessageKind.SYNC_STEP2
        fresh: Doc[Any] = Doc()
        fmap: Map[Any] = fresh.get("annotations", type=Map)
        fresh.apply_update(step2.payload)
        assert fmap.to_py() == {"n1": _note("n1", "p1")}


async def test_an_update_whose_commit_failed_is_audited_when_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit event of an update that was not stored is lost with it: the client's
    retry must be audited, not taken for the rest of the same change."""
    monkeypatch.setattr(annotate, "AUDIT_BURST_S", 0.3)
    async with _service(tmp_path, Inbox()) as (db, store, svc, room, p):
        doc: Doc[Any] = Doc()
        amap: Map[Any] = doc.get("annotations", type=Map)
        amap["n1"] = _note("n1", "p1")
        await svc.message(p, room, "img:1", update_message(doc.get_update()))
        await asyncio.sleep(0.4)  # a new change of n1 starts
        sv = doc.get_state()
        amap["n1"] = {**_note("n1", "p1"), "updated": 2.0}
        moved = update_message(doc.get_update(sv))
        later = store.later

        def fail(*work: Any) -> Any:
            monkeypatch.setattr(store, "later", later)
            raise OSError("disk full")

        monkeypatch.setattr(store, "later", fail)
        with pytest.raises(annotate.Unavailable):
            await svc.message(p, room, "img:1", moved)
        await svc.message(p, room, "img:1", moved)  # the client syncs again and resends
        async with db.read() as conn:
            result = await conn.execute(
                sa.text("select detail from audit_events where action = 'annotations.changed'")
            )
            details = result.scalars().all()
    assert [json.loads(d) for d in details] == [
        {"added": ["n1"], "updated": [], "deleted": []},
        {"added": [], "updated": ["n1"], "deleted": []},
    ]
