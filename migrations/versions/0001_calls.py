"""calls and call_events

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out rather than imported from the models: a revision must keep meaning what it
# meant when it was written, whatever the models become.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("pbx", sa.String(), nullable=False),
        sa.Column("call_uuid", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("caller_id_name", sa.String(), nullable=False),
        sa.Column("caller_id_number", sa.String(), nullable=False),
        sa.Column("destination", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("billsec", sa.Integer(), nullable=False),
        sa.Column("hangup_cause", sa.String(), nullable=False),
        sa.Column("flow", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("variables", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.UniqueConstraint("pbx", "call_uuid", name="uq_calls_pbx_call_uuid"),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_flow_started_at", "calls", ["flow", "started_at"])
    op.create_index("ix_calls_hangup_cause", "calls", ["hangup_cause"])

    # The unique (pbx, call_uuid, seq) index also serves look-ups of one call's events.
    op.create_table(
        "call_events",
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("pbx", sa.String(), nullable=False),
        sa.Column("call_uuid", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        sa.UniqueConstraint("pbx", "call_uuid", "seq", name="uq_call_events_pbx_call_uuid_seq"),
    )


def downgrade() -> None:
    op.drop_table("call_events")
    op.drop_index("ix_calls_hangup_cause", table_name="calls")
    op.drop_index("ix_calls_flow_started_at", table_name="calls")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_table("calls")
