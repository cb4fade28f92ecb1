"""``Store``: the database plus the audit log, and the ways to write.

- ``tx()``: a write transaction the caller awaits (admission, host actions).
- ``later(job)``: a job that joins the next group commit: every job queued while the
  previous transaction ran shares one transaction. For writes that must be durable but
  need not hold up the caller (a participant's presence and its audit event on every
  socket connect). ``close()`` drains the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.audit.log import AuditLog
from consultd.store.db import Database

log = logging.getLogger(__name__)

Job = Callable[[AsyncConnection], Awaitable[None]]


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.audit = AuditLog()
        self._jobs: list[tuple[Job, asyncio.Future[None]]] = []
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

    def later(self, job: Job) -> asyncio.Future[None]:
        """Queue ``job`` for the next group commit; the future resolves once it is on disk
        (await it when the caller must not go on before that, e.g. before a broadcast)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.append((job, done))
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return done

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            jobs, self._jobs = self._jobs, []
            if jobs:
                try:
                    async with self.tx() as conn:
                        for job, _ in jobs:
                            await job(conn)
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
            elif self._closing:
                return

    async def close(self) -> None:
        """Write everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
