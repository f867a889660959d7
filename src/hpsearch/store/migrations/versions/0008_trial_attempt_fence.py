"""trials.attempt: the number of a trial's latest claim, the fencing token of its worker's writes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
    # A trial claimed before this migration holds its latest attempt's number (its attempts are numbered 1..n).
    op.execute(
        "UPDATE trials SET attempt = (SELECT COUNT(*) FROM trial_attempts WHERE trial_attempts.trial_id = trials.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_column("attempt")
