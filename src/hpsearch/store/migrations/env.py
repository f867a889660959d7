"""Alembic environment: hpsearch passes its own connection (see hpsearch.store.db.upgrade)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from hpsearch.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line, used by developers to autogenerate a revision
    connection = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://").connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
