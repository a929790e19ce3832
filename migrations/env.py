"""Alembic environment for the record tables.

The database URL comes from the caller (controller.records.migrate sets it as a config
attribute; the alembic CLI may pass `-x database_url=...`), never from a file, and no
logging is configured here so a URL with a password is never printed.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from controller.records.models import Base


def _database_url() -> str:
    url = context.config.attributes.get("database_url")
    url = url or context.get_x_argument(as_dictionary=True).get("database_url")
    if not url:
        raise RuntimeError(
            "no database URL: run migrations through controller.records.migrate, "
            "or pass `-x database_url=...` to the alembic command"
        )
    return url


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported for voxgate's records")
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


_run()
