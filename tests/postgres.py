"""Pytest plugin: private PostgreSQL servers for tests, plus a SQLite URL fixture.

Each cluster is a real server initialised in a temporary folder, listening on 127.0.0.1
on a free port, with a password-protected user: tests exercise the same driver, auth and
SQL as production, and never touch a PostgreSQL the machine may already run. Missing
PostgreSQL binaries fail the tests rather than skip them, so a green run means PostgreSQL
was tested. Registered in tests/conftest.py with `pytest_plugins = ["tests.postgres"]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.records.localpg import PostgresCluster, find_postgres_bindir


def _require_bindir() -> Path:
    bindir = find_postgres_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
            "postgresql (apt-get install postgresql); the record tests need a real server",
            pytrace=False,
        )
    return bindir


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The test session's shared private cluster."""
    cluster = PostgresCluster.create(_require_bindir())
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresCluster) -> str:
    return postgres.url


@pytest.fixture
def pg_database_url(postgres: PostgresCluster) -> str:
    """A fresh empty database per test (left for the cluster's removal at session end)."""
    return postgres.create_database()


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, for tests that stop and start the server."""
    cluster = PostgresCluster.create(_require_bindir())
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'records.sqlite3'}"
