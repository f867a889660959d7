"""studies.algorithm_choice: what `algorithm = "auto"` resolved to when the study was created, and why

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every existing study: none of them was created with algorithm = "auto".
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("algorithm_choice", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("algorithm_choice")
