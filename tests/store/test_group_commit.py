"""``Store.later``: rows and audit events group-committed, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from consultd.audit.log import AuditEvent, AuditLog
from consultd.store.db import Database
from consultd.store.tables import annotation_updates, audit_events, rooms, users
from consultd.store.unit import Insert, Store


async def _store(url: str) -> Store:
    db = Database(url)
    await db.migrate()
    store = Store(db)
    async with store.tx() as conn:
        await conn.execute(
            users.insert(),
            {
                "id": "u1",
                "email": "a@example.org",
                "name": "A",
                "password_hash": "x",
                "specialty": "radiology",
                "country": "FR",
                "languages": [],
                "created_at": 0.0,
            },
        )
        await conn.execute(
            rooms.insert(),
            {
                "id": "r1",
                "title": "t",
                "summary": "",
                "lobby": False,
                "status": "open",
                "host_user_id": "u1",
                "created_by": "u1",
                "created_at": 0.0,
            },
        )
        await store.audit.record(conn, scope="r1", actor="u1", action="room.created")
    return store


def _row(seq: int) -> dict[str, Any]:
    return {
        "room_id": "r1",
        "doc_id": "d",
        "seq": seq,
        "author_id": "p1",
        "data": bytes([seq % 256]) * 40,
        "at": float(seq),
    }


def _event(seq: int) -> AuditEvent:
    return AuditEvent("r1", "p1", "annotations.changed", "d", "r1", {"added": [f"a{seq}"]})


async def _audit_rows(store: Store) -> list[dict[str, Any]]:
    async with store.db.read() as conn:
        result = await conn.execute(
            sa.select(audit_events).where(audit_events.c.scope == "r1").order_by("seq")
        )
        return [dict(r._mapping) for r in result]


async def test_rows_and_audit_events_commit_together_and_chain(database_url: str) -> None:
    store = await _store(database_url)
    try:
        # Concurrent callers share commits; each future resolves once its work is on disk.
        await asyncio.gather(
            *(store.later(Insert(annotation_updates, _row(i)), _event(i)) for i in range(1, 41))
        )
        async with store.db.read() as conn:
            stored = (
                await conn.execute(sa.select(annotation_updates).order_by(annotation_updates.c.seq))
            ).all()
        assert [r.seq for r in stored] == list(range(1, 41))
        assert bytes(stored[6].data) == bytes([7]) * 40
        events = await _audit_rows(store)
        assert len(events) == 41 and AuditLog.verify(events)
        assert events[-1]["detail"] == {"added": ["a40"]}
    finally:
        await store.close()
        await store.db.close()


async def test_a_failed_commit_fails_its_callers_and_keeps_the_chain(database_url: str) -> None:
    store = await _store(database_url)
    try:
        await store.later(Insert(annotation_updates, _row(1)), _event(1))
        # A duplicate key: the whole group fails, nothing of it is stored.
        with pytest.raises(IntegrityError):
            await store.later(
                Insert(annotation_updates, _row(2)),
                Insert(annotation_updates, _row(1)),
                _event(2),
            )
        await store.later(Insert(annotation_updates, _row(3)), _event(3))
        async with store.db.read() as conn:
            seqs = (
                (await conn.execute(sa.select(annotation_updates.c.seq).order_by("seq")))
                .scalars()
                .all()
            )
        assert seqs == [1, 3]
        events = await _audit_rows(store)
        assert [e["detail"] for e in events[1:]] == [{"added": ["a1"]}, {"added": ["a3"]}]
        assert AuditLog.verify(events), "the rolled-back event left no hole in the chain"
    finally:
        await store.close()
        await store.db.close()


async def test_close_writes_what_is_queued_and_returns(database_url: str) -> None:
    store = await _store(database_url)
    try:
        done = store.later(Insert(annotation_updates, _row(1)), _event(1))
        # close() wakes the writer while it may be committing: it must still return.
        async with asyncio.timeout(5):
            await store.close()
        assert done.done() and done.exception() is None
    finally:
        await store.db.close()
