"""workers record the Keras backend they train with and its version

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A study may require a backend ([run] backend): the claim compares it with the claiming worker's row.
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("backend", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("backend_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("backend_version")
        batch.drop_column("backend")
