"""``Store``: the database plus the audit log, and the one way to open a write transaction."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.audit.log import AuditLog
from consultd.store.db import Database


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.audit = AuditLog()

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; audit events recorded in it commit or roll back with it."""
        try:
            async with self.db.write() as conn:
                yield conn
        except BaseException:
            self.audit.forget()
            raise
