"""dtmf, tool_calls, transfers, recordings: what happened in a call, one row per thing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out rather than imported, as in 0001: this revision must not change with the models.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def _call_columns() -> list[sa.Column]:
    return [
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("pbx", sa.String(), nullable=False),
        sa.Column("call_uuid", sa.String(), nullable=False),
    ]


def _keys(table: str, *unique: str) -> list[sa.schema.SchemaItem]:
    return [sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sa.UniqueConstraint("pbx", "call_uuid", *unique, name=f"uq_{table}_pbx_call_uuid_{'_'.join(unique)}")]


def upgrade() -> None:
    op.create_table(
        "dtmf", *_call_columns(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("digit", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        *_keys("dtmf", "seq"),
    )
    op.create_index("ix_dtmf_call_uuid", "dtmf", ["call_uuid"])
    op.create_table(
        "tool_calls", *_call_columns(),
        sa.Column("turn_seq", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("arguments", _JSON, nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        *_keys("tool_calls", "turn_seq", "position"),
    )
    op.create_index("ix_tool_calls_call_uuid", "tool_calls", ["call_uuid"])
    op.create_index("ix_tool_calls_name_at", "tool_calls", ["name", "at"])
    op.create_table(
        "transfers", *_call_columns(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("destination", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *_keys("transfers", "seq"),
    )
    op.create_index("ix_transfers_call_uuid", "transfers", ["call_uuid"])
    op.create_index("ix_transfers_at", "transfers", ["at"])
    op.create_table(
        "recordings", *_call_columns(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        *_keys("recordings", "seq"),
    )
    op.create_index("ix_recordings_call_uuid", "recordings", ["call_uuid"])
    op.create_index("ix_recordings_started_at", "recordings", ["started_at"])


def downgrade() -> None:
    for table in ("recordings", "transfers", "tool_calls", "dtmf"):
        op.drop_table(table)  # their indexes go with them
