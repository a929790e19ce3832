"""The alembic migrations, up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from controller.records import migrate
from controller.records.models import Base

TURNS_SCHEMA = ({"ix_turns_call_uuid", "ix_turns_started_at"}, {"uq_turns_pbx_call_uuid_seq"})
DETAIL_SCHEMA = {
    "dtmf": ({"ix_dtmf_call_uuid"}, {"uq_dtmf_pbx_call_uuid_seq"}),
    "tool_calls": ({"ix_tool_calls_call_uuid", "ix_tool_calls_name_at"},
                   {"uq_tool_calls_pbx_call_uuid_turn_seq_position"}),
    "transfers": ({"ix_transfers_call_uuid", "ix_transfers_at"}, {"uq_transfers_pbx_call_uuid_seq"}),
    "recordings": ({"ix_recordings_call_uuid", "ix_recordings_started_at"}, {"uq_recordings_pbx_call_uuid_seq"}),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_database_url")


def _schema(url: str) -> dict[str, tuple[set[str], set[str]]]:
    """Table -> (index names, unique constraint names), as the database reports them."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        db = inspect(engine)
        return {
            table: (
                # PostgreSQL also lists the index behind each unique constraint.
                {ix["name"] for ix in db.get_indexes(table) if "duplicates_constraint" not in ix},
                {uq["name"] for uq in db.get_unique_constraints(table)},
            )
            for table in db.get_table_names()
        }
    finally:
        engine.dispose()


def _model_drift(url: str) -> list:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_creates_the_tables_and_downgrade_removes_them(empty_url):
    migrate.upgrade(empty_url)
    schema = _schema(empty_url)
    assert set(schema) == {"alembic_version", "calls", "call_events", "turns", "call_attempts", *DETAIL_SCHEMA,
                           "webhook_deliveries"}
    assert schema["calls"] == (
        {"ix_calls_started_at", "ix_calls_flow_started_at", "ix_calls_hangup_cause"},
        {"uq_calls_pbx_call_uuid"},
    )
    assert schema["call_events"][1] == {"uq_call_events_pbx_call_uuid_seq"}
    assert schema["turns"] == TURNS_SCHEMA

    migrate.downgrade(empty_url, "base")
    assert set(_schema(empty_url)) == {"alembic_version"}

    migrate.upgrade(empty_url, "0001")
    assert {"calls", "call_events"} <= set(_schema(empty_url))


def test_turns_revision_goes_down_and_up_again(empty_url):
    migrate.upgrade(empty_url, "0001")
    before = _schema(empty_url)
    assert "turns" not in before
    for _ in range(2):  # 0001 -> 0002 -> 0001 -> 0002
        migrate.upgrade(empty_url, "0002")
        assert _schema(empty_url) == {**before, "turns": TURNS_SCHEMA}
        migrate.downgrade(empty_url, "0001")
        assert _schema(empty_url) == before


def test_models_match_the_migrated_schema(empty_url):
    migrate.upgrade(empty_url)
    assert _model_drift(empty_url) == []


def test_upgrade_creates_the_sqlite_folder(tmp_path):
    path = tmp_path / "var" / "lib" / "voxgate" / "records.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    assert path.is_file()


def test_migrations_do_not_log_the_password(postgres, pg_database_url, caplog):
    with caplog.at_level(logging.DEBUG):
        migrate.upgrade(pg_database_url)
        migrate.downgrade(pg_database_url, "base")
    assert "Running downgrade 0001" in caplog.text
    assert postgres.password not in caplog.text


def test_views_revision_goes_down_and_up_again(empty_url):
    from sqlalchemy import create_engine, inspect

    def views() -> set[str]:
        engine = create_engine(empty_url)
        try:
            return set(inspect(engine).get_view_names())
        finally:
            engine.dispose()

    migrate.upgrade(empty_url, "0002")
    assert views() == set()
    for _ in range(2):
        migrate.upgrade(empty_url)
        assert views() == {"call_daily", "hangup_causes", "reply_daily"}
        migrate.downgrade(empty_url, "0002")
        assert views() == set()


def test_detail_tables_revision_goes_down_and_up_again(empty_url):
    migrate.upgrade(empty_url, "0003")
    before = _schema(empty_url)
    assert not set(DETAIL_SCHEMA) & set(before)
    for _ in range(2):  # 0003 -> 0004 -> 0003 -> 0004
        migrate.upgrade(empty_url, "0004")
        assert _schema(empty_url) == {**before, **DETAIL_SCHEMA}
        migrate.downgrade(empty_url, "0003")
        assert _schema(empty_url) == before
    migrate.upgrade(empty_url)
    assert _model_drift(empty_url) == []


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_flow_state_and_attempts_revision_goes_down_and_up_again(empty_url):
    migrate.upgrade(empty_url, "0004")
    before = _schema(empty_url)
    for _ in range(2):  # the views on `calls` survive both ways
        migrate.upgrade(empty_url, "0005")
        assert "state" in _columns(empty_url, "calls")
        assert _schema(empty_url)["call_attempts"] == (
            {"ix_call_attempts_started_at", "ix_call_attempts_call_uuid"}, {"uq_call_attempts_request_id_attempt"})
        migrate.downgrade(empty_url, "0004")
        assert "state" not in _columns(empty_url, "calls") and _schema(empty_url) == before
    migrate.upgrade(empty_url)
    assert _model_drift(empty_url) == []


def test_webhook_deliveries_revision_goes_down_and_up_again(empty_url):
    migrate.upgrade(empty_url, "0005")
    before = _schema(empty_url)
    assert "webhook_deliveries" not in before
    for _ in range(2):  # 0005 -> 0006 -> 0005 -> 0006
        migrate.upgrade(empty_url, "0006")
        assert _schema(empty_url) == {**before, "webhook_deliveries": (
            {"ix_webhook_deliveries_at", "ix_webhook_deliveries_event_id", "ix_webhook_deliveries_call_uuid"},
            {"uq_webhook_deliveries_delivery_id_attempt"})}
        migrate.downgrade(empty_url, "0005")
        assert _schema(empty_url) == before
    migrate.upgrade(empty_url)
    assert _model_drift(empty_url) == []


def test_call_instance_revision_goes_down_and_up_again(empty_url):
    migrate.upgrade(empty_url, "0006")
    for _ in range(2):  # 0006 -> 0007 -> 0006 -> 0007
        migrate.upgrade(empty_url, "0007")
        assert "instance" in _columns(empty_url, "calls")
        migrate.downgrade(empty_url, "0006")
        assert "instance" not in _columns(empty_url, "calls")
    migrate.upgrade(empty_url)
    assert _model_drift(empty_url) == []


def test_instances_upgrading_together_take_turns(pg_database_url):
    """Several instances started at once each run `voxgate db upgrade` on the same empty database."""
    voxgate = Path(sys.executable).parent / "voxgate"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")} | {
        "VOXGATE_DATABASE_URL": pg_database_url}
    runs = [subprocess.Popen([str(voxgate), "db", "upgrade"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT) for _ in range(4)]
    said = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, said
    assert _model_drift(pg_database_url) == []
