"""Alembic environment: runs migrations on the connection novanet hands over."""

from __future__ import annotations

from alembic import context

from novanet.db.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `novanet db sync`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
