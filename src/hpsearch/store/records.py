"""What the store hands out and takes in: frozen dataclasses, never ORM rows.

Records read (``*Record``) carry the same attribute names as the table's columns, so code written against the
rows reads them unchanged; they cannot be changed in place (a change is a store method). Records written
(``New*``) are what a caller builds to insert a row; the store fills the ids, numbers and defaults.

Example::

    >>> from hpsearch.store.records import NewArtifact
    >>> NewArtifact(study_id=1, kind="checkpoint", uri="/a/epoch-3.keras", sha256="0" * 64, size_bytes=10).epoch
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from hpsearch.space import Value

R = TypeVar("R")


def from_row(cls: type[R], row: Any) -> R:
    """The record ``cls`` of an ORM row or a Core row (by attribute name).

    Example::

        >>> from types import SimpleNamespace
        >>> from_row(WorkerRecord, SimpleNamespace(id=1, name="w", host="h", pid=2, gpu=None, state="IDLE",
        ...          started_at=None, last_heartbeat_at=None, stopped_at=None)).name
        'w'
    """
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class StudyRecord:
    """A stored study (table ``studies``). Example: ``store.study("mnist").direction`` is ``"max"``."""

    id: int
    name: str
    state: str
    objective_name: str
    direction: str
    objectives: list[dict[str, str]] | None
    algorithm: str
    max_trials: int
    max_epochs: int
    seed: int
    spec: dict[str, Any]
    space: dict[str, Any]
    source_path: str
    base_dir: str
    artifact_root: str
    message: str | None
    created_at: datetime
    updated_at: datetime
    # Trials finished up to this instant no longer count as consecutive failures (a FAILED study resumed).
    failures_reset_at: datetime | None = None
    # algorithm = "auto": {"algorithm", "options", "reason"} of its pick at creation (None for other studies).
    algorithm_choice: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrialRecord:
    """A stored trial (table ``trials``). Example: ``store.trial(study.id, 0).objective``."""

    id: int
    study_id: int
    number: int
    state: str
    params: dict[str, Any]
    objective: float | None
    objective_values: list[float | None] | None
    best_epoch: int | None
    epochs_done: int
    budget_epochs: int
    initial_epoch: int
    parent_trial_id: int | None
    bracket: int | None
    rung: int | None
    seed: int
    worker_id: int | None
    lease_expires_at: datetime | None
    stop_requested: bool
    retries: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


@dataclass(frozen=True)
class AttemptRecord:
    """One claim of a trial (table ``trial_attempts``). Example: ``store.attempts(trial.id)[0].outcome``."""

    id: int
    trial_id: int
    attempt: int
    worker_id: int | None
    start_epoch: int
    last_checkpoint_epoch: int | None
    outcome: str | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class WorkerRecord:
    """A registered worker (table ``workers``). Example: ``store.final_job_worker(job.id).host``."""

    id: int
    name: str
    host: str
    pid: int
    gpu: str | None
    state: str
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class ArtifactRecord:
    """A stored file (table ``artifacts``): a checkpoint or an exported model. Example: ``a.uri``."""

    id: int
    study_id: int
    trial_id: int | None
    final_job_id: int | None
    kind: str
    epoch: int | None
    uri: str
    sha256: str
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class FinalJobRecord:
    """A promotion (table ``final_jobs``). Example: ``store.final_job(job_id).state == "COMPLETED"``."""

    id: int
    study_id: int
    number: int
    trial_id: int
    state: str
    params: dict[str, Any]
    train_on: str
    epochs: int
    patience: int | None
    seed: int
    epochs_done: int
    best_epoch: int | None
    objective: float | None
    test_metrics: dict[str, Any] | None
    confusion_matrix: dict[str, Any] | None
    worker_id: int | None
    lease_expires_at: datetime | None
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int = 0  # the fencing token of its latest claim (see hpsearch.store.final_jobs)
    checkpoint_attempt: int | None = None  # whose directory holds the last accepted backup
    checkpoint_epoch: int | None = None


@dataclass(frozen=True)
class ClassMetricRecord:
    """Per-class test metrics of a final model (table ``final_class_metrics``)."""

    id: int
    final_job_id: int
    class_label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SliceMetricRecord:
    """A binary classifier's test metrics at one threshold and slice (table ``final_slice_metrics``)."""

    id: int
    final_job_id: int
    slice: str
    slice_value: str
    threshold: float
    count: int
    positives: int
    accuracy: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    auc: float | None


@dataclass(frozen=True)
class ClaimedTrial:
    """What a worker needs to run the trial it claimed (see ``Store.claim``). Example: ``claimed.params``."""

    trial_id: int
    study_id: int
    study_name: str
    number: int
    params: dict[str, Value]
    budget_epochs: int
    initial_epoch: int
    seed: int
    checkpoint_uri: str | None
    checkpoint_sha256: str | None
    # This claim's number (1 for the first): the fencing token the worker passes with every write.
    attempt: int = 1
    # The study's [run] lease and renewal interval: the worker renews from the claim on, before it loads data.
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0


@dataclass(frozen=True)
class StudySnapshot:
    """A study's trials, objective curves, attempts and workers read in one transaction (a consistent view
    of a study that is still running). Example: ``store.snapshot(study.id).curves[trial.id]``."""

    trials: list[TrialRecord]
    curves: dict[int, dict[int, float | None]]  # trial id -> epoch -> the (first) objective's value
    attempts: list[AttemptRecord]
    workers: dict[int, WorkerRecord]


# --- inputs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewStudy:
    """A study to insert (``Store.create_study``); its state starts RUNNING.

    Example::

        >>> NewStudy(name="s", objective_name="val_loss", direction="min", algorithm="random",
        ...          max_trials=4, max_epochs=2, seed=0, spec={}, space={"space": []}, source_path="/s.toml",
        ...          base_dir="/", artifact_root="/a").state
        'RUNNING'
    """

    name: str
    objective_name: str
    direction: str
    algorithm: str
    max_trials: int
    max_epochs: int
    seed: int
    spec: dict[str, Any]
    space: dict[str, Any]
    source_path: str
    base_dir: str
    artifact_root: str
    # Every objective as [{"name": ..., "direction": ...}]; None: objective_name alone.
    objectives: list[dict[str, str]] | None = None
    state: str = "RUNNING"
    # algorithm = "auto": its pick and the reason (see StudyRecord.algorithm_choice).
    algorithm_choice: dict[str, Any] | None = None
    message: str | None = None


@dataclass(frozen=True)
class NewFinalJob:
    """A promotion to queue (``Store.create_final_job``); the store numbers it.

    Example::

        >>> NewFinalJob(study_id=1, trial_id=7, params={"units": 8}, train_on="train", epochs=5, seed=3).patience
    """

    study_id: int
    trial_id: int
    params: dict[str, Any]
    train_on: str
    epochs: int
    seed: int
    patience: int | None = None


@dataclass(frozen=True)
class NewArtifact:
    """A file to record: a trial's checkpoint (``Store.record_checkpoint``) or a final job's export
    (``Store.finish_final_job``, which fills ``final_job_id``). Example in the module docstring."""

    study_id: int
    kind: str
    uri: str
    sha256: str
    size_bytes: int
    trial_id: int | None = None
    final_job_id: int | None = None
    epoch: int | None = None


def new_values(record: Any, cls: type[Any]) -> dict[str, Any]:
    """The column values of an input record (a ``New*``, or anything with those attributes)."""
    return {f.name: getattr(record, f.name, f.default) for f in fields(cls)}
