"""Alembic environment for the record tables.

The database URL comes from the caller (controller.records.migrate sets it as a config
attribute; the alembic CLI may pass `-x database_url=...`), never from a file, and no
logging is configured here so a URL with a password is never printed.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from controller.records.models import Base

# Instances started together each run `voxgate db upgrade`: on PostgreSQL they take turns on this
# transaction-scoped advisory lock, and the later ones find the schema already at head.
MIGRATION_LOCK = 0x766F7867  # "voxg"


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
                if connection.dialect.name == "postgresql":
                    connection.execute(text("select pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                context.run_migrations()
    finally:
        engine.dispose()


_run()
