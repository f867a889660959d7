"""final jobs: promotions, their curves, per-class and per-slice test metrics; artifacts of a final job

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "final_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("train_on", sa.String(length=32), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("patience", sa.Integer(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("objective", sa.Float(), nullable=True),
        sa.Column("test_metrics", sa.JSON(), nullable=True),
        sa.Column("confusion_matrix", sa.JSON(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "number", name="uq_final_jobs_study_number"),
    )
    with op.batch_alter_table("final_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_final_jobs_study_id"), ["study_id"], unique=False)

    op.create_table(
        "final_class_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("final_job_id", sa.Integer(), nullable=False),
        sa.Column("class_label", sa.String(length=200), nullable=False),
        sa.Column("precision", sa.Float(), nullable=False),
        sa.Column("recall", sa.Float(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=False),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["final_job_id"], ["final_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("final_class_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_final_class_metrics_final_job_id"), ["final_job_id"], unique=False)

    op.create_table(
        "final_job_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("final_job_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["final_job_id"], ["final_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("final_job_id", "epoch", "name", name="uq_final_job_metrics_job_epoch_name"),
    )
    op.create_table(
        "final_slice_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("final_job_id", sa.Integer(), nullable=False),
        sa.Column("slice", sa.String(length=200), nullable=False),
        sa.Column("slice_value", sa.String(length=400), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("false_positive_rate", sa.Float(), nullable=True),
        sa.Column("false_negative_rate", sa.Float(), nullable=True),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("auc", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["final_job_id"], ["final_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("final_slice_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_final_slice_metrics_final_job_id"), ["final_job_id"], unique=False)

    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("final_job_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_artifacts_final_job_id"), ["final_job_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_artifacts_final_job_id", "final_jobs", ["final_job_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_artifacts_final_job_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_artifacts_final_job_id"))
        batch_op.drop_column("final_job_id")

    with op.batch_alter_table("final_slice_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_final_slice_metrics_final_job_id"))

    op.drop_table("final_slice_metrics")
    op.drop_table("final_job_metrics")
    with op.batch_alter_table("final_class_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_final_class_metrics_final_job_id"))

    op.drop_table("final_class_metrics")
    with op.batch_alter_table("final_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_final_jobs_study_id"))

    op.drop_table("final_jobs")
