"""indexes for the claim of any study's oldest queued trial and a study's latest finished trials

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without it PostgreSQL walks the primary key in id order past every finished trial to the first queued one.
    op.create_index("ix_trials_state_id", "trials", ["state", "id"])
    # The coordinator's consecutive-failure check reads a study's latest finished trials every tick.
    op.create_index("ix_trials_study_finished", "trials", ["study_id", "finished_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_trials_study_finished", table_name="trials")
    op.drop_index("ix_trials_state_id", table_name="trials")
