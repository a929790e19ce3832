"""Bring a records database to a schema revision by running alembic in-process.

The alembic scripts live in the repository's top-level migrations/ folder (the product's
fixed layout), so they are found from a checkout or an editable install.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate up to `revision`; for a SQLite file, its folder is created first."""
    _create_sqlite_folder(database_url)
    command.upgrade(_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate down to `revision` ("base" drops every record table)."""
    command.downgrade(_config(database_url), revision)


def _config(database_url: str) -> Config:
    if not (MIGRATIONS / "env.py").is_file():
        raise FileNotFoundError(
            f"voxgate's alembic migrations are not at {MIGRATIONS}: they ship in the source "
            "tree's migrations/ folder, so run voxgate from a checkout or an editable install"
        )
    config = Config(str(ALEMBIC_INI))
    # ConfigParser interpolates '%'; the URL goes in attributes, where nothing is interpolated or printed.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["database_url"] = database_url
    return config


def _create_sqlite_folder(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.query.get("uri") or url.database.startswith("file:"):
        return
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
