"""The database: one async engine for SQLite (default) or PostgreSQL, migrations on start.

SQLite allows one writer at a time; ``Database.write()`` serialises writers in-process so
that a busy SQLite never makes the event loop spin on ``database is locked``.

``insert_many()`` writes rows of several tables in one transaction (the group commit of
annotation updates and audit events). On PostgreSQL it goes through SQLAlchemy (asyncpg
has no thread). On SQLite it runs on a writer connection of its own, on the event loop's
thread: a few rows in WAL mode without fsync take a fraction of a millisecond, while
every hop to a driver thread made one thread or the other wait for the GIL (aiosqlite:
about 0.25 ms per statement; a writer thread: 25-35 ms per commit under load, with the
default 5 ms switch interval). The fsync happens at checkpoints, so this connection does
not checkpoint on commit; a thread checkpoints (PASSIVE, on its own connection, with the
GIL released inside SQLite) once enough rows were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: Rows written by ``insert_many`` between WAL checkpoints (SQLite's own default is 1000
#: pages; a row of the annotation log is well under a page).
CHECKPOINT_ROWS = 1000

log = logging.getLogger(__name__)

_InsertPlan = tuple[str, tuple[bool, ...], Callable[[dict[str, Any]], tuple[Any, ...]]]


def async_url(url: str) -> str:
    """Map a plain ``sqlite:///`` or ``postgresql://`` URL to its asyncio driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise ValueError("database URL must start with sqlite:/// or postgresql://")


class Database:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._write_lock = asyncio.Lock()
        self._sqlite_writer: ThreadPoolExecutor | None = None
        self._sqlite_conn: sqlite3.Connection | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Future[None] | None = None
        self._rows_since_checkpoint = 0
        self._changes_seen = 0
        # (table, columns) -> (INSERT statement, which columns hold JSON, row -> params)
        self._sqlite_sql: dict[tuple[str, tuple[str, ...]], _InsertPlan] = {}

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on exit; serialised per process on SQLite."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def insert_ignoring_conflicts(self, table: sa.Table) -> Any:
        """``INSERT … ON CONFLICT DO NOTHING`` in the engine's dialect."""
        if self.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    async def insert_many(self, batches: Sequence[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
        """Insert each table's rows, in order, in one transaction (module docstring)."""
        if not self.is_sqlite:
            async with self.write() as conn:
                for table, rows in batches:
                    if rows:
                        await conn.execute(table.insert(), rows)
            return
        async with self._write_lock:
            try:
                self._insert_sync(batches)
            except sqlite3.Error as exc:
                # The same exception types as the SQLAlchemy path (IntegrityError, ...).
                raise sa.exc.DBAPIError.instance(
                    None, None, exc, sqlite3.Error, hide_parameters=True
                ) from exc
        if self._rows_since_checkpoint >= CHECKPOINT_ROWS and self._checkpoint is None:
            self._rows_since_checkpoint = 0
            self._checkpoint = asyncio.get_running_loop().run_in_executor(
                self._checkpointer(), self._checkpoint_sync
            )
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _insert_sync(self, batches: Sequence[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
        conn = self._sqlite_conn
        if conn is None:
            conn = self._sqlite_conn = self._connect()
            conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, rows in batches:
                self._executemany(conn, table, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._rows_since_checkpoint += conn.total_changes - self._changes_seen
        self._changes_seen = conn.total_changes

    def _connect(self) -> sqlite3.Connection:
        path = self.engine.url.database or ":memory:"
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _sqlite_pragmas(conn, None)
        return conn

    def _checkpointer(self) -> ThreadPoolExecutor:
        if self._sqlite_writer is None:
            self._sqlite_writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        return self._sqlite_writer

    def _checkpoint_sync(self) -> None:
        if self._checkpoint_conn is None:
            self._checkpoint_conn = self._connect()
        self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint_done(self, fut: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("WAL checkpoint failed: %s", type(fut.exception()).__name__)

    def _executemany(
        self, conn: sqlite3.Connection, table: sa.Table, rows: list[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        cols = tuple(rows[0])
        plan = self._sqlite_sql.get((table.name, cols))
        if plan is None:
            sql = (
                "INSERT INTO " + table.name + " (" + ", ".join(cols) + ") VALUES ("
                + ", ".join("?" * len(cols)) + ")"
            )  # fmt: skip
            as_json = tuple(isinstance(table.c[c].type, sa.JSON) for c in cols)
            getter = operator.itemgetter(*cols) if len(cols) > 1 else lambda r: (r[cols[0]],)
            plan = self._sqlite_sql[table.name, cols] = (sql, as_json, getter)
        sql, as_json, params_of = plan
        if any(as_json):
            params: Any = [
                tuple(json.dumps(r[c]) if j else r[c] for c, j in zip(cols, as_json, strict=True))
                for r in rows
            ]
        else:
            params = map(params_of, rows)  # C, no Python frame per row
        conn.executemany(sql, params)

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        if self._sqlite_conn is not None:
            self._sqlite_conn.close()
            self._sqlite_conn = None
        if self._sqlite_writer is not None:
            conn, self._checkpoint_conn = self._checkpoint_conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._sqlite_writer, conn.close)
            self._sqlite_writer.shutdown()
            self._sqlite_writer = None
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; NORMAL: durable across process crashes,
    # fsync at checkpoints (the OS-crash window is the WAL's last commits).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: sa.Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")
