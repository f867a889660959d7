"""SQLAlchemy 2 typed models. docs/schema.md documents every column; the Alembic migrations under
``migrations/versions`` create exactly these tables (a test compares them)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC: both engines store it the same way. This node's clock: leases and the timestamps compared
    across machines use the database server's instead (``statements.DbNow``)."""
    return datetime.now(UTC).replace(tzinfo=None)


class TrialState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"
    FAILED = "FAILED"


FINISHED_STATES = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)


class StudyState(enum.StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RUNNING)
    objective_name: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(3))
    # Every objective as [{"name": ..., "direction": ...}]; the first is objective_name / direction.
    objectives: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=None)
    algorithm: Mapped[str] = mapped_column(String(32))
    max_trials: Mapped[int] = mapped_column(Integer)
    max_epochs: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_path: Mapped[str] = mapped_column(Text)
    base_dir: Mapped[str] = mapped_column(Text)
    artifact_root: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Set when a FAILED study is resumed: the latest finished_at of its trials then. Only trials finished
    # after it count towards max_consecutive_failures (a value of the trials' own clock, never compared
    # with another machine's).
    failures_reset_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # algorithm = "auto": what it resolved to when the study was created, and why ({"algorithm", "options",
    # "reason"}); coordinators build that pick (hpsearch.strategies.auto.effective_search). NULL otherwise.
    algorithm_choice: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[str | None] = mapped_column(String(64), default=None)
    # The Keras backend its trials train with ("tensorflow", "jax", "torch") and that package's version.
    backend: Mapped[str | None] = mapped_column(String(32), default=None)
    backend_version: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(16), default="IDLE")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        # Serve the claim query: the oldest QUEUED trial of a given running study, or of any.
        Index("ix_trials_claim", "state", "study_id", "id"),
        Index("ix_trials_state_id", "state", "id"),
        # Serves the coordinator's look at a study's latest finished trials (consecutive failures).
        Index("ix_trials_study_finished", "study_id", "finished_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=TrialState.QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    objective: Mapped[float | None] = mapped_column(Float, default=None)
    # The value of every study objective at best_epoch (the epoch where the first objective was best).
    objective_values: Mapped[list[float | None] | None] = mapped_column(JSON, default=None)
    best_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    budget_epochs: Mapped[int] = mapped_column(Integer)
    initial_epoch: Mapped[int] = mapped_column(Integer, default=0)
    parent_trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), default=None)
    # Successive halving (Hyperband, ASHA, BOHB): which bracket and rung the trial belongs to.
    bracket: Mapped[int | None] = mapped_column(Integer, default=None)
    rung: Mapped[int | None] = mapped_column(Integer, default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), default=None, index=True)
    # The number of its latest claim (trial_attempts.attempt): the fencing token every write of the worker
    # holding the trial must match, so a worker that lost its lease cannot write over the next attempt's.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)


class TrialAttempt(Base):
    """One claim of a trial by a worker: where it started and how far it checkpointed before it ended."""

    __tablename__ = "trial_attempts"
    __table_args__ = (UniqueConstraint("trial_id", "attempt", name="uq_trial_attempts_trial_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), default=None)
    start_epoch: Mapped[int] = mapped_column(Integer)
    last_checkpoint_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class CoordinatorLease(Base):
    """Per study, the coordinator that may plan its trials now; a standby takes over when the lease lapses."""

    __tablename__ = "coordinator_leases"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class TrialParam(Base):
    __tablename__ = "trial_params"
    __table_args__ = (UniqueConstraint("trial_id", "name", name="uq_trial_params_trial_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), index=True)
    value_type: Mapped[str] = mapped_column(String(8))
    value_int: Mapped[int | None] = mapped_column(BigInteger, default=None)
    value_float: Mapped[float | None] = mapped_column(Float, default=None)
    value_text: Mapped[str | None] = mapped_column(Text, default=None)
    value_bool: Mapped[bool | None] = mapped_column(Boolean, default=None)


class TrialMetric(Base):
    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "epoch", "name", name="uq_trial_metrics_trial_epoch_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), default=None, index=True)
    final_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("final_jobs.id", ondelete="CASCADE"), default=None, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FinalJob(Base):
    """A promotion: the chosen trial's parameters retrained into the model that is evaluated and exported."""

    __tablename__ = "final_jobs"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_final_jobs_study_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=TrialState.QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    train_on: Mapped[str] = mapped_column(String(32))
    epochs: Mapped[int] = mapped_column(Integer)
    patience: Mapped[int | None] = mapped_column(Integer, default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    best_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    objective: Mapped[float | None] = mapped_column(Float, default=None)
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    confusion_matrix: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # The fencing token: the number of the latest claim (never reset, unlike ``attempts``, which counts the
    # crashes of the current promotion). Every write of a worker names it; files of attempt k live in a<k>/.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The attempt whose directory holds the last backup a worker reported and the store accepted, and its epoch.
    checkpoint_attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    checkpoint_epoch: Mapped[int | None] = mapped_column(Integer, default=None)


class FinalJobMetric(Base):
    """The final job's learning curve: one row per epoch and logged metric, like ``trial_metrics``."""

    __tablename__ = "final_job_metrics"
    __table_args__ = (UniqueConstraint("final_job_id", "epoch", "name", name="uq_final_job_metrics_job_epoch_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    final_job_id: Mapped[int] = mapped_column(ForeignKey("final_jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FinalClassMetric(Base):
    """Per-class precision, recall and F1 of a classifier's final model on the test split."""

    __tablename__ = "final_class_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    final_job_id: Mapped[int] = mapped_column(ForeignKey("final_jobs.id", ondelete="CASCADE"), index=True)
    class_label: Mapped[str] = mapped_column(String(200))
    precision: Mapped[float] = mapped_column(Float)
    recall: Mapped[float] = mapped_column(Float)
    f1: Mapped[float] = mapped_column(Float)
    support: Mapped[int] = mapped_column(Integer)


class FinalSliceMetric(Base):
    """A binary classifier's test metrics at one threshold, overall (slice ``all``) or in one data slice."""

    __tablename__ = "final_slice_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    final_job_id: Mapped[int] = mapped_column(ForeignKey("final_jobs.id", ondelete="CASCADE"), index=True)
    slice: Mapped[str] = mapped_column(String(200))
    slice_value: Mapped[str] = mapped_column(String(400))
    threshold: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float)
    false_positive_rate: Mapped[float | None] = mapped_column(Float)
    false_negative_rate: Mapped[float | None] = mapped_column(Float)
    precision: Mapped[float | None] = mapped_column(Float)
    recall: Mapped[float | None] = mapped_column(Float)
    f1: Mapped[float | None] = mapped_column(Float)
    auc: Mapped[float | None] = mapped_column(Float)


TRIAL_SUMMARY_SQL = """
CREATE VIEW trial_summary AS
SELECT s.name AS study,
       t.number AS number,
       t.state AS state,
       t.objective AS objective,
       s.objective_name AS objective_name,
       t.best_epoch AS best_epoch,
       t.epochs_done AS epochs_done,
       t.budget_epochs AS budget_epochs,
       t.duration_seconds AS duration_seconds,
       w.name AS worker,
       w.host AS host,
       t.params AS params,
       t.retries AS retries,
       t.error AS error,
       t.created_at AS created_at,
       t.started_at AS started_at,
       t.finished_at AS finished_at
FROM trials t
JOIN studies s ON s.id = t.study_id
LEFT JOIN workers w ON w.id = t.worker_id
"""
