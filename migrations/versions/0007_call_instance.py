"""calls.instance: which voxgate instance handled the call (several share one database when scaled out)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER, as in 0005: a batch copy of `calls` would trip over the views on it.
    op.add_column("calls", sa.Column("instance", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("calls", "instance")
