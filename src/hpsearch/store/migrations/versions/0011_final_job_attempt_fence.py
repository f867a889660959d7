"""final_jobs.attempt: the number of a final job's latest claim, the fencing token of its worker's writes;
final_jobs.checkpoint_attempt/checkpoint_epoch: the attempt whose directory holds the last accepted backup

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("final_jobs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("checkpoint_attempt", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("checkpoint_epoch", sa.Integer(), nullable=True))
    # A job claimed before this migration continues its numbering after its claims so far. Its backup is in
    # final/<number>/ itself (no attempt directory): checkpoint_attempt NULL makes the next attempt resume there.
    op.execute("UPDATE final_jobs SET attempt = attempts")


def downgrade() -> None:
    with op.batch_alter_table("final_jobs") as batch:
        batch.drop_column("checkpoint_epoch")
        batch.drop_column("checkpoint_attempt")
        batch.drop_column("attempt")
