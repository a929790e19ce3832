from __future__ import annotations

import pytest

from controller.records import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty records database at the latest schema, once per supported database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_database_url")
    migrate.upgrade(url)
    return url
