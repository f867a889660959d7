"""studies.failures_reset_at: resuming a FAILED study resets its consecutive-failure streak

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every existing study: all its finished trials count, as before.
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("failures_reset_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("failures_reset_at")
