"""Reads for live views across studies (the dashboard): every study's progress, every worker with its current
trial and busy time, one page of a study's trials, a trial's files, and a cheap fingerprint of a study that
changes whenever anything a report shows does.

The progress and utilisation come from the ``study_progress`` and ``worker_utilization`` views
(docs/schema.md), so the numbers are the ones an analyst's SQL sees.

Example::

    for study in store.study_overview():
        print(study.name, study.completed, study.best_objective)
    total, trials, workers = store.trial_page(study.id, states=["COMPLETED"], sort="objective", limit=50)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from hpsearch.store.database import Database
from hpsearch.store.models import Artifact, FinalJob, Study, Trial, TrialMetric, Worker
from hpsearch.store.records import ArtifactRecord, TrialRecord, from_row

# Sort keys of trial_page and the columns behind them; ties always go to the lower number.
TRIAL_SORTS = {
    "number": Trial.number,
    "objective": Trial.objective,
    "duration": Trial.duration_seconds,
    "started": Trial.started_at,
    "finished": Trial.finished_at,
    "epochs": Trial.epochs_done,
}


@dataclass(frozen=True)
class StudyProgress:
    """One row of ``study_progress`` with the study's id and creation time.

    Example: ``store.study_overview()[0].completed`` is ``12``."""

    id: int
    name: str
    state: str
    message: str | None
    algorithm: str
    objective_name: str
    direction: str
    max_trials: int
    trials: int
    queued: int
    running: int
    completed: int
    pruned: int
    failed: int
    best_objective: float | None
    epochs_trained: int
    created_at: datetime
    first_started_at: datetime | None
    last_finished_at: datetime | None


@dataclass(frozen=True)
class RunningTrial:
    """A RUNNING trial and where it runs. Example: ``store.running_trials()[0].study`` is ``"mnist"``."""

    worker_id: int | None
    study: str
    number: int
    epochs_done: int
    budget_epochs: int
    started_at: datetime | None


@dataclass(frozen=True)
class LiveTrial:
    """A RUNNING trial for a terminal's live view: its epoch, its objective's last value and its worker.
    Example: ``store.live_trials(study.id, "val_accuracy")[0].last_objective``."""

    number: int
    epochs_done: int
    budget_epochs: int
    initial_epoch: int
    last_objective: float | None
    worker: str | None
    started_at: datetime | None


@dataclass(frozen=True)
class WorkerUsage:
    """A worker (``workers`` with ``worker_utilization``). Example: ``w.busy_seconds / w.alive_seconds``."""

    id: int
    name: str
    host: str
    pid: int
    gpu: str | None
    state: str
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
    attempts: int
    alive_seconds: float
    busy_seconds: float


def _int(value: Any) -> int:
    return int(value or 0)


class Overview(Database):
    """Reads for live views (see :mod:`hpsearch.store.overview`); each is one transaction."""

    def study_overview(self) -> list[StudyProgress]:
        """Every study's progress, in id order (one query over the ``study_progress`` view)."""
        query = text(
            "SELECT s.id, p.*, s.message, s.created_at FROM study_progress p "
            "JOIN studies s ON s.name = p.study ORDER BY s.id"
        )
        with self.transaction() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            StudyProgress(
                id=row["id"],
                name=row["study"],
                state=row["state"],
                message=row["message"],
                algorithm=row["algorithm"],
                objective_name=row["objective_name"],
                direction=row["direction"],
                max_trials=row["max_trials"],
                trials=_int(row["trials"]),
                queued=_int(row["queued"]),
                running=_int(row["running"]),
                completed=_int(row["completed"]),
                pruned=_int(row["pruned"]),
                failed=_int(row["failed"]),
                best_objective=row["best_objective"],
                epochs_trained=_int(row["epochs_trained"]),
                created_at=row["created_at"],
                first_started_at=_timestamp(row["first_started_at"]),
                last_finished_at=_timestamp(row["last_finished_at"]),
            )
            for row in rows
        ]

    def running_trials(self) -> list[RunningTrial]:
        """Every RUNNING trial of every study with its worker, by study and number."""
        query = (
            select(
                Trial.worker_id,
                Study.name.label("study"),
                Trial.number,
                Trial.epochs_done,
                Trial.budget_epochs,
                Trial.started_at,
            )
            .join(Study, Study.id == Trial.study_id)
            .where(Trial.state == "RUNNING")
            .order_by(Study.name, Trial.number)
        )
        with self.transaction() as connection:
            return [from_row(RunningTrial, row) for row in connection.execute(query)]

    def live_trials(self, study_id: int, objective: str) -> list[LiveTrial]:
        """A study's RUNNING trials by number, with the last logged value of ``objective`` and the worker's
        name (two queries, whatever the number of trials)."""
        query = (
            select(
                Trial.id,
                Trial.number,
                Trial.epochs_done,
                Trial.budget_epochs,
                Trial.initial_epoch,
                Trial.started_at,
                Worker.name,
            )
            .outerjoin(Worker, Worker.id == Trial.worker_id)
            .where(Trial.study_id == study_id, Trial.state == "RUNNING")
            .order_by(Trial.number)
        )
        with self.transaction() as connection:
            rows = connection.execute(query).all()
            last: dict[int, float | None] = {}
            if rows:
                metrics = (
                    select(TrialMetric.trial_id, TrialMetric.value)
                    .where(TrialMetric.trial_id.in_([r.id for r in rows]), TrialMetric.name == objective)
                    .order_by(TrialMetric.epoch)
                )
                last = {trial_id: value for trial_id, value in connection.execute(metrics)}
        return [
            LiveTrial(r.number, r.epochs_done, r.budget_epochs, r.initial_epoch, last.get(r.id), r.name, r.started_at)
            for r in rows
        ]

    def recent_failures(self, study_id: int, limit: int = 3) -> list[tuple[int, str]]:
        """The last ``limit`` FAILED trials of a study, newest first: (number, first line of the error)."""
        query = (
            select(Trial.number, Trial.error)
            .where(Trial.study_id == study_id, Trial.state == "FAILED")
            .order_by(Trial.finished_at.desc(), Trial.number.desc())
            .limit(limit)
        )
        with self.transaction() as connection:
            return [
                (number, (error or "").strip().splitlines()[0] if (error or "").strip() else "no error recorded")
                for number, error in connection.execute(query)
            ]

    def worker_usage(self) -> list[WorkerUsage]:
        """Every worker, newest first, with its attempts and busy time (the ``worker_utilization`` view)."""
        query = text(
            "SELECT w.id, w.name, w.host, w.pid, w.gpu, w.state, w.started_at, w.last_heartbeat_at, w.stopped_at, "
            "u.attempts, u.alive_seconds, u.busy_seconds FROM workers w "
            "JOIN worker_utilization u ON u.worker = w.name ORDER BY w.id DESC"
        )
        with self.transaction() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            WorkerUsage(
                **{k: row[k] for k in ("id", "name", "host", "pid", "gpu", "state")},
                started_at=_timestamp(row["started_at"]) or row["started_at"],
                last_heartbeat_at=_timestamp(row["last_heartbeat_at"]) or row["last_heartbeat_at"],
                stopped_at=_timestamp(row["stopped_at"]),
                attempts=_int(row["attempts"]),
                alive_seconds=float(row["alive_seconds"] or 0.0),
                busy_seconds=float(row["busy_seconds"] or 0.0),
            )
            for row in rows
        ]

    def trial_page(
        self,
        study_id: int,
        *,
        states: Sequence[str] = (),
        sort: str = "number",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[TrialRecord], dict[int, str]]:
        """One page of a study's trials: how many match, the page, and the names of its workers by id.
        ``states`` filters (empty: all); ``sort`` is a key of ``TRIAL_SORTS``; trials without a value of the
        sort key come last either way; ties go to the lower number.

        Example: ``store.trial_page(study.id, states=["FAILED"], sort="finished", descending=True, limit=20)``.
        """
        column = TRIAL_SORTS[sort]
        which = [Trial.study_id == study_id]
        if states:
            which.append(Trial.state.in_(list(states)))
        order = (column.is_(None), column.desc() if descending else column.asc(), Trial.number)
        page = select(Trial.__table__).where(*which).order_by(*order).offset(offset).limit(limit)
        with self.transaction() as connection:
            total = connection.scalar(select(func.count()).select_from(Trial).where(*which)) or 0
            trials = [from_row(TrialRecord, row) for row in connection.execute(page)]
            ids = {t.worker_id for t in trials if t.worker_id is not None}
            names = (
                dict(connection.execute(select(Worker.id, Worker.name).where(Worker.id.in_(ids))).tuples().all())
                if ids
                else {}
            )
        return int(total), trials, names

    def trial_artifacts(self, trial_id: int) -> list[ArtifactRecord]:
        """A trial's stored files (its checkpoint), oldest first."""
        query = select(Artifact.__table__).where(Artifact.trial_id == trial_id).order_by(Artifact.id)
        with self.transaction() as connection:
            return [from_row(ArtifactRecord, row) for row in connection.execute(query)]

    def study_fingerprint(self, study_id: int) -> str:
        """A short string that changes whenever the study's state, a trial's state, epochs, retries or finish
        time, or a final job changes: what a live view compares (an ETag) before reading the whole study.
        Three small aggregate queries in one transaction.

        Example: ``store.study_fingerprint(study.id)`` -> ``"RUNNING|None|2026-...|COMPLETED:12:36:...|..."``.
        """
        trials = (
            select(
                Trial.state,
                func.count(),
                func.coalesce(func.sum(Trial.epochs_done), 0),
                func.coalesce(func.sum(Trial.retries), 0),
                func.max(Trial.finished_at),
                func.max(Trial.id),
            )
            .where(Trial.study_id == study_id)
            .group_by(Trial.state)
            .order_by(Trial.state)
        )
        jobs = (
            select(FinalJob.state, func.count(), func.coalesce(func.sum(FinalJob.epochs_done), 0))
            .where(FinalJob.study_id == study_id)
            .group_by(FinalJob.state)
            .order_by(FinalJob.state)
        )
        study = select(Study.state, Study.message, Study.updated_at).where(Study.id == study_id)
        with self.transaction() as connection:
            parts: list[tuple[Any, ...]] = [tuple(connection.execute(study).one())]
            parts += [tuple(row) for row in connection.execute(trials)]
            parts += [("final", *row) for row in connection.execute(jobs)]
        return "|".join(":".join(str(value) for value in part) for part in parts)


def _timestamp(value: Any) -> datetime | None:
    """Views hand SQLite's timestamps back as text; PostgreSQL's as datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
