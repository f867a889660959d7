"""The trial queue: queue trials, claim one, heartbeat, report epochs and checkpoints, finish, release or
retry. Which state a trial may move to from which is the table in :mod:`hpsearch.store.states`
(``TRANSITIONS``, re-exported here): every write below is guarded by it.

The worker's calls (claim, heartbeat, record_epoch, finish) run prebuilt statements
(:mod:`hpsearch.store.statements`) on a plain connection: one round trip each on PostgreSQL, a claim's
writes one statement inside its transaction.

Example::

    numbers = store.add_trials(study, [NewTrial({"units": 8}, budget_epochs=3)])
    claimed = store.claim(worker_id, study.id)
    store.record_epoch(claimed.trial_id, worker_id, 1, {"val_loss": 0.3}, "val_loss", "min", attempt=claimed.attempt)
    store.finish(claimed.trial_id, worker_id, TrialState.COMPLETED, attempt=claimed.attempt)

Fencing: a claim gives the trial its next attempt number (``claimed.attempt``, kept in ``trials.attempt``); a
worker passes it with every write (``attempt=``) and each write checks it in the same statement, so a worker
paused past its lease (SIGSTOP, a long GC, a network stall) whose trial was claimed again changes nothing
when it wakes: its heartbeat answers ``lost``, its epoch, finish and release are refused (False / None) and
:meth:`Queue.record_checkpoint` answers ``CheckpointRecorded(accepted=False)``. Every time compared across
machines (leases, a trial's start and end) is the database server's clock, never the worker's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, CursorResult, delete, func, insert, select, update
from sqlalchemy.orm import Session

from hpsearch.records import NewTrial
from hpsearch.space import Value
from hpsearch.store.backend_claims import runs_on_worker_backend
from hpsearch.store.database import Database, retrying
from hpsearch.store.final_jobs import claim_final_job_in
from hpsearch.store.models import (
    Artifact,
    Study,
    StudyState,
    Trial,
    TrialAttempt,
    TrialMetric,
    TrialParam,
    TrialState,
    Worker,
)
from hpsearch.store.records import ClaimedTrial, FinalJobRecord, NewArtifact, StudyRecord, new_values
from hpsearch.store.statements import (
    CLAIM,
    END_ATTEMPT,
    FINISH,
    FINISH_ALL,
    HEARTBEAT,
    LATEST_CHECKPOINT,
    NEW_ATTEMPT,
    NOW,
    OWNED,
    WORKER_SEEN,
    WORKER_STATE,
    add_metrics,
    claim_query,
    db_now,
    end_attempt,
    finite_or_none,
    param_values,
    report,
    report_with_metrics,
    together,
)
from hpsearch.store.states import TRANSITIONS, check_finished, check_transition, guard

HeartbeatAnswer = Literal["continue", "stop", "pause", "lost"]

__all__ = ["TRANSITIONS", "CheckpointRecorded", "HeartbeatAnswer", "Queue", "retry_or_fail"]


@dataclass(frozen=True)
class CheckpointRecorded:
    """What :meth:`Queue.record_checkpoint` did. ``accepted`` False: the writer's attempt no longer holds the
    trial (a stale worker), nothing was written, and it must stop that trial and delete no file. ``replaced``:
    the file the row named before, now free to delete (by the owner only).

    >>> CheckpointRecorded(accepted=False).replaced is None
    True
    """

    accepted: bool
    replaced: str | None = None


def _owned(trial_id: int, worker_id: int, attempt: int | None) -> Any:
    """OWNED (RUNNING, held by this worker in this attempt; None: any attempt) with its parameters bound."""
    return OWNED.params(p_trial=trial_id, p_worker=worker_id, p_attempt=attempt)


class Queue(Database):
    """The trial queue (see :mod:`hpsearch.store.queue`)."""

    @retrying
    def add_trials(self, study: StudyRecord, new_trials: Sequence[NewTrial]) -> list[int]:
        """Queue trials with the next numbers; returns the numbers. Example: ``[0, 1]`` for a new study."""
        if not new_trials:
            return []
        with self.transaction() as connection:
            last = connection.scalar(select(func.max(Trial.number)).where(Trial.study_id == study.id))
            first = (last if last is not None else -1) + 1
            parents = [new.parent_number for new in new_trials if new.parent_number is not None]
            parent_ids = dict(
                connection.execute(
                    select(Trial.number, Trial.id).where(Trial.study_id == study.id, Trial.number.in_(parents))
                ).all()
                if parents
                else []
            )
            rows = [
                {
                    "study_id": study.id,
                    "number": first + offset,
                    "state": TrialState.QUEUED,
                    "params": dict(new.params),
                    "budget_epochs": new.budget_epochs,
                    "initial_epoch": new.initial_epoch,
                    "parent_trial_id": parent_ids.get(new.parent_number) if new.parent_number is not None else None,
                    "seed": study.seed + first + offset,
                    "bracket": new.bracket,
                    "rung": new.rung,
                }
                for offset, new in enumerate(new_trials)
            ]
            ids = connection.scalars(insert(Trial).returning(Trial.id, sort_by_parameter_order=True), rows).all()
            params = [
                param_values(trial_id, name, value)
                for trial_id, new in zip(ids, new_trials, strict=True)
                for name, value in new.params.items()
            ]
            if params:
                connection.execute(insert(TrialParam), params)
            return [first + offset for offset in range(len(rows))]

    @retrying
    def claim(self, worker_id: int, study_id: int | None = None) -> ClaimedTrial | None:
        """Atomically take the oldest QUEUED trial (lowest id) of a RUNNING study: QUEUED -> RUNNING.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent claimers never wait on or take the
        same row. SQLite: the transaction began with ``BEGIN IMMEDIATE`` (see db.py), so claims serialise.
        """
        with self.transaction() as connection:
            return claim_trial(connection, worker_id, study_id)

    @retrying
    def claim_next(self, worker_id: int, study_id: int | None = None) -> ClaimedTrial | FinalJobRecord | None:
        """A worker's next work, in one transaction: a trial first, else a promotion (final job) waiting for
        a worker. An idle worker asks at every poll; finding nothing costs two plain queries."""
        with self.transaction() as connection:
            return claim_trial(connection, worker_id, study_id) or claim_final_job_in(connection, worker_id, study_id)

    @retrying
    def heartbeat(
        self, trial_id: int, worker_id: int, lease_seconds: float, *, attempt: int | None = None
    ) -> HeartbeatAnswer:
        """Renew the lease until ``lease_seconds`` from now by the database's clock. ``lost``: another worker
        or attempt owns the trial now (or it is no longer RUNNING); ``stop``: the strategy stops (prunes) it;
        ``pause``: its study was stopped, so the trial goes back to the queue to resume later; else
        ``continue``."""
        owner = {"p_trial": trial_id, "p_worker": worker_id, "p_attempt": attempt}
        with self.autocommit() as connection:  # two facts, each atomic on its own
            renewed = connection.execute(HEARTBEAT, owner | {"p_lease_seconds": float(lease_seconds)}).first()
            connection.execute(WORKER_SEEN, {"p_worker": worker_id})
        if renewed is None:
            return "lost"
        if renewed.stop_requested:
            return "stop"
        return "pause" if renewed.study_state != StudyState.RUNNING else "continue"

    @retrying
    def record_epoch(
        self,
        trial_id: int,
        worker_id: int,
        epoch: int,
        logs: Mapping[str, float],
        objective: str,
        direction: str,
        other_objectives: Sequence[str] = (),
        *,
        attempt: int | None = None,
    ) -> bool:
        """Write one epoch's metrics (idempotent on (trial, epoch, name)) and the best objective so far, with
        every objective's value at that epoch. Returns False when the worker (in ``attempt``) no longer owns
        the trial; then nothing is written (the metric rows are guarded by the same statement on PostgreSQL,
        the same transaction on SQLite)."""
        parameters: dict[str, Any] = {"p_trial": trial_id, "p_worker": worker_id, "p_epoch": epoch}
        parameters["p_attempt"] = attempt
        value = logs.get(objective)
        scored = value is not None and math.isfinite(value)
        if value is not None and scored:
            others = (logs.get(name) for name in other_objectives)
            parameters["p_value"] = float(value)
            parameters["p_values"] = [float(value), *(None if v is None else finite_or_none(v) for v in others)]
        # One UPDATE (row lock, epoch count, best objective compared in SQL) and one INSERT per epoch.
        with self.autocommit() as connection:
            if connection.dialect.name == "postgresql":
                names = {"p_names": list(logs), "p_logs": [finite_or_none(float(v)) for v in logs.values()]}
                statement = report_with_metrics(direction, scored)
                return connection.execute(statement, parameters | names).first() is not None
            if connection.execute(report(direction, scored), parameters).first() is None:
                return False
            add_metrics(connection, TrialMetric, {"trial_id": trial_id, "epoch": epoch}, logs)
            return True

    @retrying
    def record_checkpoint(
        self, checkpoint: NewArtifact, worker_id: int | None = None, *, attempt: int | None = None
    ) -> CheckpointRecorded:
        """A trial keeps one checkpoint row, its latest. Each epoch writes a new file (named by its attempt),
        so the row always names a complete file whose sha256 it holds. With ``worker_id`` (a worker: always)
        the row changes only while that worker holds the trial in ``attempt``, checked under the trial's row
        lock in the same transaction; else the answer is ``accepted=False`` and nothing changes."""
        trial_id = checkpoint.trial_id
        with self.transaction() as connection:
            this_attempt: Any = TrialAttempt.ended_at.is_(None)
            if worker_id is not None:
                owner = connection.execute(
                    select(Trial.attempt).where(_owned(trial_id or -1, worker_id, attempt)).with_for_update()
                ).first()
                if owner is None:
                    return CheckpointRecorded(accepted=False)
                this_attempt = TrialAttempt.attempt == owner.attempt
            connection.execute(
                update(TrialAttempt)
                .where(TrialAttempt.trial_id == trial_id, this_attempt)
                .values(last_checkpoint_epoch=checkpoint.epoch)
            )
            existing = connection.execute(
                select(Artifact.id, Artifact.uri)
                .where(Artifact.trial_id == trial_id, Artifact.kind == "checkpoint")
                .with_for_update()
            ).first()
            values = new_values(checkpoint, NewArtifact)
            if existing is None:
                connection.execute(insert(Artifact).values(**values, created_at=NOW))
                return CheckpointRecorded(accepted=True)
            changed = {k: values[k] for k in ("epoch", "uri", "sha256", "size_bytes")}
            connection.execute(update(Artifact).where(Artifact.id == existing.id).values(**changed, created_at=NOW))
            replaced = existing.uri if existing.uri != checkpoint.uri else None
            return CheckpointRecorded(accepted=True, replaced=replaced)

    @retrying
    def finish(
        self,
        trial_id: int,
        worker_id: int,
        state: TrialState,
        error: str | None = None,
        extra_params: Mapping[str, Value] | None = None,
        *,
        attempt: int | None = None,
    ) -> bool:
        """End a trial the worker owns, RUNNING -> COMPLETED, PRUNED or FAILED (False if it does not own it;
        a TransitionError for any other ``state``): its state, duration and error (appended to an earlier
        attempt's), its attempt, the worker idle, and parameters it declared while training. With ``attempt``,
        only that attempt's worker may end it (fencing)."""
        check_finished(state)
        parameters = {
            "p_trial": trial_id, "p_worker": worker_id, "p_outcome": state, "p_error": error,
            "p_state": "IDLE", "p_attempt": attempt,
        }  # fmt: skip
        if not extra_params and self.engine.dialect.name == "postgresql":
            with self.autocommit() as connection:
                return connection.execute(FINISH_ALL, parameters).first() is not None
        with self.transaction() as connection:
            trial = connection.execute(FINISH, parameters).first()
            if trial is None:
                return False
            together(connection, (END_ATTEMPT, WORKER_STATE), parameters)
            if extra_params:
                new = {k: v for k, v in extra_params.items() if k not in trial.params}
                connection.execute(update(Trial).where(Trial.id == trial_id).values(params={**trial.params, **new}))
                if new:
                    connection.execute(insert(TrialParam), [param_values(trial_id, k, v) for k, v in new.items()])
            return True

    @retrying
    def release(self, trial_id: int, worker_id: int, *, attempt: int | None = None) -> None:
        """Give a trial back to the queue unharmed (its study was stopped), RUNNING -> QUEUED; it resumes
        from its checkpoint. Nothing happens when the worker (in ``attempt``) no longer owns it."""
        check_transition(TrialState.RUNNING, TrialState.QUEUED)
        with self.session() as session:
            owned = _owned(trial_id, worker_id, attempt)
            if session.scalar(select(Trial.id).where(owned).with_for_update()) is None:
                return
            end_attempt(session.connection(), trial_id, "RELEASED")
            session.execute(
                update(Trial)
                .where(owned)
                .values(state=TrialState.QUEUED, worker_id=None, lease_expires_at=None)
            )
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))

    @retrying
    def retry(self, trial_id: int, worker_id: int, reason: str, *, attempt: int | None = None) -> str | None:
        """After a crash: RUNNING -> QUEUED to resume from its last checkpoint, or FAILED past max_retries.
        Returns the new state (None when this worker, in ``attempt``, no longer owns the trial)."""
        with self.session() as session:
            trial = session.scalar(select(Trial).where(_owned(trial_id, worker_id, attempt)).with_for_update())
            if trial is None:
                return None
            study = session.get_one(Study, trial.study_id)
            now = db_now(session.connection())
            retry_or_fail(session, trial, reason, study.spec["search"]["max_retries"], now)
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return trial.state

    @retrying
    def restart_from_scratch(self, trial_id: int, worker_id: int, reason: str, *, attempt: int | None = None) -> None:
        """Its checkpoint was unusable: forget the trial's progress (metrics, objective) and say why. The
        trial stays RUNNING. Nothing happens when the worker (in ``attempt``) no longer owns it."""
        with self.session() as session:
            trial = session.scalar(select(Trial).where(_owned(trial_id, worker_id, attempt)).with_for_update())
            if trial is None:
                return
            session.execute(delete(TrialMetric).where(TrialMetric.trial_id == trial_id))
            session.execute(
                update(TrialAttempt)
                .where(TrialAttempt.trial_id == trial_id, TrialAttempt.ended_at.is_(None))
                .values(start_epoch=0)
            )
            trial.objective = trial.best_epoch = trial.objective_values = None
            trial.epochs_done = 0
            trial.error = f"{trial.error}\n{reason}" if trial.error else reason

    @retrying
    def close_queued(self, study_id: int, reason: str) -> int:
        """A budget ran out: trials still waiting will never start, QUEUED -> PRUNED with the reason.
        Returns how many."""
        with self.session() as session:
            result = session.execute(
                update(Trial)
                .where(Trial.study_id == study_id, guard(Trial.state, TrialState.QUEUED, TrialState.PRUNED))
                .values(state=TrialState.PRUNED, error=reason, finished_at=NOW)
            )
            return int(cast(CursorResult[Any], result).rowcount or 0)

    @retrying
    def request_stop(self, study_id: int, numbers: Sequence[int]) -> None:
        """Ask the workers running these trials to stop them (their next heartbeat answers ``stop``)."""
        with self.session() as session:
            session.execute(
                update(Trial)
                .where(Trial.study_id == study_id, Trial.number.in_(list(numbers)), Trial.state == TrialState.RUNNING)
                .values(stop_requested=True)
            )


@functools.cache
def claim_for_backend(one_study: bool) -> Any:
    """The claim query limited to studies the claiming worker (``p_worker``) may run: those that require no
    backend (``[run] backend`` unset) or the one in its ``workers.backend``. Why here: a worker's trials all
    train in one backend (its fork server imported keras once), so a mismatch is a claim it must not make."""
    return claim_query(one_study).where(runs_on_worker_backend())  # final jobs: backend_claims.final_claim_query


def claim_trial(connection: Connection, worker_id: int, study_id: int | None) -> ClaimedTrial | None:
    """The body of Queue.claim, in the caller's transaction. The lease and the start time are the database's
    clock; the trial's attempt number goes up by one (the new fencing token)."""
    query = claim_for_backend(study_id is not None)
    row = connection.execute(query, {"p_study": study_id, "p_worker": worker_id}).first()
    if row is None:
        return None
    trial_id = row.id
    # Resume from the trial's own last checkpoint (an earlier attempt died), else from the parent's
    # (a promotion: Hyperband, ASHA), else start at epoch 0. A trial never claimed before has no
    # attempts and no checkpoint of its own: its first claim skips those two lookups.
    claimed_before = row.started_at is not None
    checkpoint = None
    for source_id in (trial_id if claimed_before else None, row.parent_trial_id):
        if source_id is not None and checkpoint is None:
            checkpoint = connection.execute(LATEST_CHECKPOINT, {"p_trial": source_id}).first()
    error = row.error
    if checkpoint is None and row.parent_trial_id is not None:
        note = f"parent's checkpoint is gone (freed?); training from epoch 0, not {row.initial_epoch}"
        error = f"{error}\n{note}" if error else note
    attempt = int(row.attempt or 0) + 1
    start_epoch = (checkpoint.epoch or 0) if checkpoint else 0
    claim = {
        "p_trial": trial_id, "p_worker": worker_id, "p_lease_seconds": float(row.run["lease_seconds"]),
        "p_error": error, "p_attempt": attempt, "p_start_epoch": start_epoch, "p_state": "BUSY",
    }  # fmt: skip
    together(connection, (CLAIM, NEW_ATTEMPT, WORKER_STATE), claim)
    return ClaimedTrial(
        trial_id=trial_id,
        study_id=row.study_id,
        study_name=row.study_name,
        number=row.number,
        params=dict(row.params),
        budget_epochs=row.budget_epochs,
        initial_epoch=start_epoch,
        seed=row.seed,
        checkpoint_uri=checkpoint.uri if checkpoint else None,
        checkpoint_sha256=checkpoint.sha256 if checkpoint else None,
        attempt=attempt,
        lease_seconds=float(row.run["lease_seconds"]),
        heartbeat_seconds=float(row.run.get("heartbeat_seconds", 5.0)),
    )


def retry_or_fail(session: Session, trial: Trial, reason: str, max_retries: int, now: datetime) -> None:
    """A RUNNING trial whose attempt was lost: QUEUED again, or FAILED once it has used ``max_retries``."""
    new = TrialState.FAILED if trial.retries + 1 > max_retries else TrialState.QUEUED
    check_transition(trial.state, new)
    end_attempt(session.connection(), trial.id, "LOST")
    trial.error = f"{trial.error}\n{reason}" if trial.error else reason
    trial.retries += 1
    trial.lease_expires_at = None
    trial.state = new
    if new == TrialState.FAILED:
        trial.finished_at = now
        trial.duration_seconds = (now - trial.started_at).total_seconds() if trial.started_at else None
    else:
        trial.worker_id = None
