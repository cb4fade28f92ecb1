"""The migrated schema is exactly what ``tables.py`` describes, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from consultd.store.db import Database
from consultd.store.tables import metadata


async def test_migrations_match_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await db.migrate()  # idempotent

        def diff(conn: Any) -> list[Any]:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.close()
