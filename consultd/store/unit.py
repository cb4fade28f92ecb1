"""``Store``: the database plus the audit log, and the ways to write.

- ``tx()``: a write transaction the caller awaits (admission, host actions).
- ``later(*work)``: work that joins the next group commit: everything queued while the
  previous transaction ran shares one transaction. For writes that must be durable but
  need not hold up the caller (a participant's presence and its audit event on every
  socket connect), or whose caller waits only for the commit (an annotation update).
  ``Insert`` rows and ``AuditEvent``s go to the database in one ``executemany`` per
  table and one transaction (``Database.insert_many``), so a busy room's update log costs
  one round trip per commit, not several per update. Jobs (coroutine functions) run after
  them, in one transaction of their own. ``close()`` drains the queue.

Under load a commit starts at most every ``COMMIT_GAP_S``: work that arrives sooner waits
for the rest of the gap and shares that commit. A transaction has a fixed cost (about
0.1 ms on SQLite: BEGIN, COMMIT, the WAL write) that many small ones would pay per
update; a quiet room's update still commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.audit.log import AuditEvent, AuditLog
from consultd.store.db import Database
from consultd.store.tables import audit_events

log = logging.getLogger(__name__)

Job = Callable[[AsyncConnection], Awaitable[None]]

#: The shortest time between the starts of two group commits (module docstring).
COMMIT_GAP_S = 0.003


@dataclass(frozen=True, slots=True)
class Insert:
    """One row of ``table`` for the next group commit."""

    table: sa.Table
    row: dict[str, Any]


Work = Job | Insert | AuditEvent


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.audit = AuditLog()
        self._jobs: list[tuple[tuple[Work, ...], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; audit events recorded in it commit or roll back with it."""
        try:
            async with self.db.write() as conn:
                yield conn
        except BaseException:
            self.audit.forget()
            raise

    def later(self, *work: Work) -> asyncio.Future[None]:
        """Queue ``work`` (in order) for the next group commit; the future resolves once it
        is on disk (await it when the caller must not go on before that, e.g. before a
        broadcast)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.append((work, done))
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return done

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -COMMIT_GAP_S
        while True:
            await self._wake.wait()
            wait = last + COMMIT_GAP_S - loop.time()
            if wait > 0 and not self._closing:
                await asyncio.sleep(wait)
            last = loop.time()
            self._wake.clear()
            jobs, self._jobs = self._jobs, []
            if jobs:
                try:
                    await self._commit([w for work, _ in jobs for w in work])
                except Exception as exc:
                    log.exception("a group commit of %d jobs failed", len(jobs))
                    for _, done in jobs:
                        if not done.done():
                            done.set_exception(exc)
                            done.exception()  # retrieved: fire-and-forget callers may not look
                else:
                    for _, done in jobs:
                        if not done.done():
                            done.set_result(None)
            # close() may have woken this loop while it was committing: nothing new is
            # queued, so that wake is spent and no other will come.
            if self._closing and not self._jobs:
                return

    async def _commit(self, work: list[Work]) -> None:
        """Rows and audit events in one transaction (``Database.insert_many``), then the
        jobs in another."""
        rows: dict[sa.Table, list[dict[str, Any]]] = {}
        events: list[AuditEvent] = []
        jobs: list[Job] = []
        for w in work:
            if isinstance(w, Insert):
                rows.setdefault(w.table, []).append(w.row)
            elif isinstance(w, AuditEvent):
                events.append(w)
            else:
                jobs.append(w)
        if events:
            missing = self.audit.missing_heads({e.scope for e in events})
            if missing:
                async with self.db.read() as conn:
                    await self.audit.load_heads(conn, missing)
            rows[audit_events] = self.audit.chain(events)
        if rows:
            try:
                await self.db.insert_many(list(rows.items()))
            except BaseException:
                self.audit.forget()
                raise
        if jobs:
            async with self.tx() as conn:
                for job in jobs:
                    await job(conn)

    async def close(self) -> None:
        """Write everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
