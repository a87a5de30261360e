"""Alembic's environment for dim's migrations: they run on the connection that dim hands over
(:func:`dim.migrations.upgrade`), inside its transaction, which holds the write lock."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("dim's migrations run from dim.migrations.upgrade(connection)")
context.configure(connection=connection)
with context.begin_transaction():  # the caller's transaction: Alembic neither begins nor commits
    context.run_migrations()
