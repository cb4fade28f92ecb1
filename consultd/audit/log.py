"""Append-only audit log, hash-chained per scope (a room, or ``accounts``).

Each event's hash covers the previous hash and the event's canonical JSON, so an edit or
a deletion in the middle breaks every later hash (``verify``). Events name ids, never
passwords, share codes, tokens or chat text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.ids import now
from consultd.store.tables import audit_events

GENESIS = "0" * 64
_HEAD = (
    sa.select(audit_events.c.seq, audit_events.c.hash)
    .where(audit_events.c.scope == sa.bindparam("scope"))
    .order_by(audit_events.c.seq.desc())
    .limit(1)
)
_INSERT = audit_events.insert()
ACCOUNTS = "accounts"


def _digest(prev: str, event: dict[str, Any]) -> str:
    body = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


class AuditLog:
    def __init__(self) -> None:
        # scope -> (last seq, last hash). Callers write inside Database.write(), which
        # serialises writers; a room's scope is only written by the process owning the room.
        self._heads: dict[str, tuple[int, str]] = {}

    async def record(
        self,
        conn: AsyncConnection,
        *,
        scope: str,
        actor: str,
        action: str,
        target: str | None = None,
        room_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        head = self._heads.get(scope)
        if head is None:
            row = (await conn.execute(_HEAD, {"scope": scope})).first()
            head = (row.seq, row.hash) if row else (0, GENESIS)
        seq, prev = head[0] + 1, head[1]
        event = {
            "scope": scope,
            "seq": seq,
            "at": now(),
            "actor": actor,
            "action": action,
            "target": target,
            "room_id": room_id,
            "detail": detail or {},
        }
        digest = _digest(prev, event)
        await conn.execute(_INSERT, {**event, "prev_hash": prev, "hash": digest})
        # If the transaction later rolls back, the caller calls forget() (see Store.tx).
        self._heads[scope] = (seq, digest)

    def forget(self) -> None:
        """Drop cached heads (after a rolled-back transaction); they reload lazily."""
        self._heads.clear()

    @staticmethod
    def verify(rows: list[dict[str, Any]]) -> bool:
        """True when ``rows`` (one scope, in seq order) form an unbroken chain."""
        prev = GENESIS
        for r in rows:
            event = {
                k: r[k]
                for k in ("scope", "seq", "at", "actor", "action", "target", "room_id", "detail")
            }
            if r["prev_hash"] != prev or _digest(prev, event) != r["hash"]:
                return False
            prev = r["hash"]
        return True
