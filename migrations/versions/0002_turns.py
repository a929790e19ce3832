"""turns: the voice agent's conversation, one row per turn

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Spelled out rather than imported, as in 0001: this revision must not change with the models.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "turns",
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("pbx", sa.String(), nullable=False),
        sa.Column("call_uuid", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("speaker", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("heard_text", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("stt_ms", sa.Float(), nullable=True),
        sa.Column("llm_first_token_ms", sa.Float(), nullable=True),
        sa.Column("tts_first_audio_ms", sa.Float(), nullable=True),
        sa.Column("voice_to_voice_ms", sa.Float(), nullable=True),
        sa.Column("barge_in_ms", sa.Float(), nullable=True),
        sa.Column("engines", _JSON, nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
        sa.UniqueConstraint("pbx", "call_uuid", "seq", name="uq_turns_pbx_call_uuid_seq"),
    )
    op.create_index("ix_turns_call_uuid", "turns", ["call_uuid"])
    op.create_index("ix_turns_started_at", "turns", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_turns_started_at", table_name="turns")
    op.drop_index("ix_turns_call_uuid", table_name="turns")
    op.drop_table("turns")
