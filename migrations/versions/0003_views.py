"""manager views: daily calls, hangup causes, agent replies (latency, barge-in)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

VIEWS = ("call_daily", "hangup_causes", "reply_daily")


def _day(column: str, dialect: str) -> str:
    return f"CAST(date_trunc('day', {column}) AS date)" if dialect == "postgresql" else f"date({column})"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(f"""
        CREATE VIEW call_daily AS
        SELECT {_day("started_at", dialect)} AS day, flow,
               count(*) AS calls,
               count(answered_at) AS answered,
               avg(CASE WHEN answered_at IS NOT NULL THEN billsec END) AS avg_handle_s,
               sum(CASE WHEN outcome = 'transferred' THEN 1 ELSE 0 END) AS transferred,
               sum(CASE WHEN answered_at IS NOT NULL AND outcome <> 'transferred' THEN 1 ELSE 0 END) AS contained
        FROM calls GROUP BY 1, 2""")
    op.execute("""
        CREATE VIEW hangup_causes AS
        SELECT hangup_cause, count(*) AS calls FROM calls GROUP BY hangup_cause""")
    percentiles = ("percentile_cont(0.5) WITHIN GROUP (ORDER BY t.voice_to_voice_ms) AS p50_voice_to_voice_ms, "
                   "percentile_cont(0.95) WITHIN GROUP (ORDER BY t.voice_to_voice_ms) AS p95_voice_to_voice_ms,"
                   if dialect == "postgresql" else "")  # SQLite has no percentiles: voxgate report computes them
    op.execute(f"""
        CREATE VIEW reply_daily AS
        SELECT {_day("t.started_at", dialect)} AS day, c.flow,
               count(*) AS replies,
               avg(t.voice_to_voice_ms) AS avg_voice_to_voice_ms, {percentiles}
               sum(CASE WHEN t.interrupted THEN 1 ELSE 0 END) AS barged_in,
               avg(t.barge_in_ms) AS avg_barge_in_ms
        FROM turns t JOIN calls c ON c.pbx = t.pbx AND c.call_uuid = t.call_uuid
        WHERE t.speaker = 'agent' GROUP BY 1, 2""")


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW {view}")
