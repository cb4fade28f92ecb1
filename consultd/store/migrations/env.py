"""Alembic environment: migrations run on the connection that ``store.db`` hands over."""

from __future__ import annotations

from alembic import context

from consultd.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `consultd migrate` (it opens the connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
