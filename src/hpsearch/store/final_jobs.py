"""Final jobs (promotions): queue one, claim it, heartbeat, report epochs, finish, fail or requeue. Their
states follow ``FINAL_JOB_TRANSITIONS`` in :mod:`hpsearch.store.states`.

Example::

    job, created = store.create_final_job(NewFinalJob(study_id=1, trial_id=7, params={}, train_on="train",
                                                      epochs=5, seed=3))
    job = store.claim_final_job(worker_id, job_id=job.id)
    store.record_final_epoch(job.id, worker_id, 1, {"loss": 0.5}, attempt=job.attempt)

Fencing, as for trials (:mod:`hpsearch.store.queue`): a claim gives the job its next attempt number
(``job.attempt``, kept in ``final_jobs.attempt`` and never reset); the worker passes it with every write
(heartbeat, epoch, checkpoint, finish, fail, requeue), and each write checks worker, attempt and RUNNING in
the statement that finds the row, so a ``promote`` frozen past its lease (SIGSTOP) whose job was claimed
again changes nothing when it wakes. Attempt k writes its files under ``final/<number>/a<k>/``; the store
records which attempt's backup was last accepted (``checkpoint_attempt``), and the next attempt resumes
from a copy of it (see :mod:`hpsearch.execution.final_run`). ``attempt=None`` matches any attempt (tests
and callers that own the job by other means).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, and_, delete, func, select, update
from sqlalchemy.orm import Session

from hpsearch.store.backend_claims import final_claim_query
from hpsearch.store.database import Database, retrying
from hpsearch.store.locks import serialize
from hpsearch.store.models import (
    Artifact,
    FinalClassMetric,
    FinalJob,
    FinalJobMetric,
    FinalSliceMetric,
    Study,
    TrialState,
    Worker,
    utcnow,
)
from hpsearch.store.records import FinalJobRecord, NewArtifact, NewFinalJob, from_row, new_values
from hpsearch.store.statements import (
    NOW,
    WORKER_STATE,
    add_metrics,
    finite_or_none,
    seconds_from_now,
)
from hpsearch.store.states import FINAL_JOB_TRANSITIONS, check_transition

# A final job that crashed this often (lost worker, killed process) is FAILED rather than queued again.
FINAL_JOB_MAX_ATTEMPTS = 3


def _move(job: FinalJob, new: TrialState) -> None:
    check_transition(job.state, new, FINAL_JOB_TRANSITIONS, what=f"final job {job.id}")
    job.state = new


def _owns_job(job_id: int, worker_id: int, attempt: int | None) -> Any:
    """RUNNING, held by this worker in this attempt (None: in any attempt)."""
    owned = and_(FinalJob.id == job_id, FinalJob.worker_id == worker_id, FinalJob.state == TrialState.RUNNING)
    return owned if attempt is None else and_(owned, FinalJob.attempt == attempt)


class FinalJobs(Database):
    """The ``final_jobs`` table and its evaluation (see :mod:`hpsearch.store.final_jobs`)."""

    @retrying
    def create_final_job(self, job: NewFinalJob) -> tuple[FinalJobRecord, bool]:
        """Queue a promotion, or return the study's job with the same trial and settings (``created`` False).
        A FAILED one is queued again (FAILED -> QUEUED): it resumes from its last backup. Two promotions of
        one study at once both succeed: the second waits for the first's commit (see
        :mod:`hpsearch.store.locks`), then finds its job (or numbers its own after it)."""
        values = new_values(job, NewFinalJob)
        with self.session() as session:
            serialize(session.connection(), "final_job", job.study_id)
            existing = session.scalar(
                select(FinalJob)
                .where(
                    FinalJob.study_id == job.study_id,
                    FinalJob.trial_id == job.trial_id,
                    FinalJob.train_on == job.train_on,
                    FinalJob.epochs == job.epochs,
                    FinalJob.patience.is_(None) if job.patience is None else FinalJob.patience == job.patience,
                )
                .order_by(FinalJob.id.desc())
                .limit(1)
                .with_for_update()
            )
            if existing is not None:
                if existing.state == TrialState.FAILED:
                    _move(existing, TrialState.QUEUED)
                    existing.attempts, existing.finished_at = 0, None
                return from_row(FinalJobRecord, existing), False
            last = session.scalar(select(func.max(FinalJob.number)).where(FinalJob.study_id == job.study_id))
            row = FinalJob(**values, number=(last or 0) + 1, state=TrialState.QUEUED, epochs_done=0, attempts=0)
            session.add(row)
            session.flush()
            return from_row(FinalJobRecord, row), True

    @retrying
    def claim_final_job(
        self, worker_id: int, study_id: int | None = None, job_id: int | None = None
    ) -> FinalJobRecord | None:
        """Take the oldest QUEUED final job (of a study, or the given one) with a lease: QUEUED -> RUNNING."""
        with self.transaction() as connection:
            return claim_final_job_in(connection, worker_id, study_id, job_id)

    @retrying
    def final_job_heartbeat(
        self, job_id: int, worker_id: int, lease_seconds: float, *, attempt: int | None = None
    ) -> bool:
        """Renew the job's lease; False when this worker (in ``attempt``) no longer owns it."""
        with self.session() as session:
            renewed = session.execute(
                update(FinalJob)
                .where(_owns_job(job_id, worker_id, attempt))
                .values(lease_expires_at=seconds_from_now(lease_seconds))  # the database's clock
            )
            session.execute(update(Worker).where(Worker.id == worker_id).values(last_heartbeat_at=NOW))
            return bool(cast(CursorResult[Any], renewed).rowcount)

    @retrying
    def record_final_epoch(
        self, job_id: int, worker_id: int, epoch: int, logs: Mapping[str, float], *, attempt: int | None = None
    ) -> bool:
        """One epoch of the final training (idempotent); False when this worker (in ``attempt``) no longer owns
        the job, and then nothing is written."""
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(_owns_job(job_id, worker_id, attempt)).with_for_update())
            if job is None:
                return False
            add_metrics(session.connection(), FinalJobMetric, {"final_job_id": job_id, "epoch": epoch}, logs)
            job.epochs_done = max(job.epochs_done, epoch)
            return True

    @retrying
    def record_final_checkpoint(self, job_id: int, worker_id: int, epoch: int, *, attempt: int) -> bool:
        """Attempt ``attempt``'s directory holds the backup after ``epoch``: the next attempt resumes from it.
        False when this worker in this attempt no longer owns the job (a stale worker): nothing is written,
        and its files stay its own, never read by the owner."""
        with self.session() as session:
            accepted = session.execute(
                update(FinalJob)
                .where(_owns_job(job_id, worker_id, attempt))
                .values(checkpoint_attempt=attempt, checkpoint_epoch=epoch)
            )
            return bool(cast(CursorResult[Any], accepted).rowcount)

    @retrying
    def finish_final_job(
        self,
        job_id: int,
        worker_id: int,
        *,
        best_epoch: int | None,
        objective: float | None,
        test_metrics: Mapping[str, Any],
        confusion: Mapping[str, Any] | None,
        class_rows: Sequence[Mapping[str, Any]],
        slice_rows: Sequence[Mapping[str, Any]],
        artifacts: Sequence[NewArtifact],
        attempt: int | None = None,
    ) -> bool:
        """Store the evaluation and the exported artifacts and mark the job COMPLETED, in one transaction
        (RUNNING -> COMPLETED; False when this worker in ``attempt`` no longer owns the job: then the job's
        artifacts stay those of the attempt that finished it)."""
        now = utcnow()
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(_owns_job(job_id, worker_id, attempt)).with_for_update())
            if job is None:
                return False
            for table in (FinalClassMetric, FinalSliceMetric):
                session.execute(delete(table).where(table.final_job_id == job_id))
            session.execute(delete(Artifact).where(Artifact.final_job_id == job_id))
            session.add_all(FinalClassMetric(final_job_id=job_id, **row) for row in class_rows)
            session.add_all(FinalSliceMetric(final_job_id=job_id, **row) for row in slice_rows)
            for artifact in artifacts:
                values = new_values(artifact, NewArtifact) | {"final_job_id": job_id, "study_id": job.study_id}
                session.add(Artifact(**values))
            _move(job, TrialState.COMPLETED)
            job.finished_at, job.lease_expires_at = now, None
            job.best_epoch = best_epoch
            job.objective = finite_or_none(objective) if objective is not None else None
            job.test_metrics = {k: finite_or_none(float(v)) for k, v in test_metrics.items()}
            job.confusion_matrix = dict(confusion) if confusion is not None else None
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return True

    @retrying
    def fail_final_job(self, job_id: int, worker_id: int, error: str, *, attempt: int | None = None) -> bool:
        """The job itself is broken (an exception, NaN): RUNNING -> FAILED with the reason; running promote
        again retries it. False (nothing written) when this worker in ``attempt`` no longer owns the job."""
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(_owns_job(job_id, worker_id, attempt)).with_for_update())
            if job is None:
                return False
            _move(job, TrialState.FAILED)
            job.finished_at, job.lease_expires_at = utcnow(), None
            job.error = f"{job.error}\n{error}" if job.error else error
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return True

    @retrying
    def requeue_final_job(
        self, job_id: int, reason: str, worker_id: int | None = None, *, attempt: int | None = None
    ) -> str | None:
        """Its process died (or its worker is gone): RUNNING -> QUEUED to resume from its backup, or FAILED
        after FINAL_JOB_MAX_ATTEMPTS. ``worker_id`` None takes the job from whoever held it. Returns the new
        state (None when the job is not RUNNING, or not this worker's in ``attempt``)."""
        condition = _owns_job(job_id, worker_id, attempt) if worker_id is not None else FinalJob.id == job_id
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(condition).with_for_update())
            if job is None or job.state != TrialState.RUNNING:
                return None
            requeue(job, reason)
            if worker_id is not None:
                session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return job.state


def claim_final_job_in(
    connection: Connection, worker_id: int, study_id: int | None, job_id: int | None = None
) -> FinalJobRecord | None:
    """The body of FinalJobs.claim_final_job, in the caller's transaction; finding none is one plain query."""
    # Only a job whose study this worker's Keras backend may run ([run] backend), as for trials.
    query = final_claim_query(job_id is not None, study_id is not None)
    found = connection.scalar(query, {"p_job": job_id, "p_study": study_id, "p_worker": worker_id})
    if found is None:
        return None
    now = utcnow()
    session = Session(bind=connection, expire_on_commit=False)  # joins the caller's transaction
    job = session.get_one(FinalJob, found)
    study = session.get_one(Study, job.study_id)
    _move(job, TrialState.RUNNING)
    job.worker_id = worker_id
    job.lease_expires_at = seconds_from_now(study.spec["run"]["lease_seconds"])  # the database's clock
    job.started_at = job.started_at or now
    job.attempts += 1
    job.attempt += 1  # the fencing token: every write of this claim names it
    session.flush()
    record = from_row(FinalJobRecord, job)
    session.close()
    connection.execute(WORKER_STATE, {"p_worker": worker_id, "p_state": "BUSY", "p_now": now})
    return record


def requeue(job: FinalJob, reason: str) -> None:
    """A RUNNING job lost its worker: QUEUED again, or FAILED after FINAL_JOB_MAX_ATTEMPTS."""
    job.error = f"{job.error}\n{reason}" if job.error else reason
    job.lease_expires_at = None
    if job.attempts >= FINAL_JOB_MAX_ATTEMPTS:
        _move(job, TrialState.FAILED)
        job.finished_at = utcnow()
    else:
        _move(job, TrialState.QUEUED)
        job.worker_id = None
