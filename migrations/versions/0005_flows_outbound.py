"""calls.state (what a flow kept about the call) and call_attempts (every try of an outbound call)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Spelled out rather than imported, as in 0001: this revision must not change with the models.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTERs (SQLite >= 3.35 does both): a batch copy of `calls` would trip over the views on it.
    op.add_column("calls", sa.Column("state", _JSON, nullable=True))
    op.create_table(
        "call_attempts",
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("pbx", sa.String(), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("trunk", sa.String(), nullable=False),
        sa.Column("flow", sa.String(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("ended_at", _TIME, nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("cause", sa.String(), nullable=False),
        sa.Column("call_uuid", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_call_attempts"),
        sa.UniqueConstraint("request_id", "attempt", name="uq_call_attempts_request_id_attempt"),
    )
    op.create_index("ix_call_attempts_started_at", "call_attempts", ["started_at"])
    op.create_index("ix_call_attempts_call_uuid", "call_attempts", ["call_uuid"])


def downgrade() -> None:
    op.drop_table("call_attempts")
    op.drop_column("calls", "state")
