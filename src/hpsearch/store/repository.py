"""Every query and transaction of hpsearch. Knows no algorithm: strategies hand it NewTrial objects."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from hpsearch.errors import StoreError, UsageError
from hpsearch.space import Value
from hpsearch.store.db import connection_error
from hpsearch.store.models import (
    FINISHED_STATES,
    Artifact,
    CoordinatorLease,
    FinalClassMetric,
    FinalJob,
    FinalJobMetric,
    FinalSliceMetric,
    Study,
    StudyState,
    Trial,
    TrialAttempt,
    TrialMetric,
    TrialParam,
    TrialState,
    Worker,
    utcnow,
)
from hpsearch.strategies.base import NewTrial, TrialView

log = logging.getLogger("hpsearch.store")

HeartbeatAnswer = Literal["continue", "stop", "pause", "lost"]
# A final job that crashed this often (lost worker, killed process) is FAILED rather than queued again.
FINAL_JOB_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ClaimedTrial:
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


def param_values(trial_id: int, name: str, value: Value) -> dict[str, Any]:
    """One typed trial_params row as column values (for a Core INSERT); ints also fill value_float so numeric
    filters work on both."""
    row: dict[str, Any] = dict.fromkeys(("value_int", "value_float", "value_text", "value_bool"))
    if isinstance(value, bool):
        row |= {"value_type": "bool", "value_bool": value}
    elif isinstance(value, int):
        row |= {"value_type": "int", "value_int": value, "value_float": float(value)}
    elif isinstance(value, float):
        row |= {"value_type": "float", "value_float": value}
    else:
        row |= {"value_type": "str", "value_text": str(value)}
    return {"trial_id": trial_id, "name": name} | row


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Store:
    """Every query of hpsearch. With ``retry_seconds`` (workers and coordinators), a lost connection is
    retried with backoff for that long, so a database restart pauses them instead of ending them; every
    method is one transaction (or statements each atomic on their own, see _autocommit) and safe to repeat
    (metric writes are idempotent).

    Three ways to talk to the database: ``session()`` (ORM) for most methods; ``_transaction()``, a plain
    connection running prebuilt statements, for the writes that run per trial or per tick (claim,
    heartbeat, epoch report, finish, queueing), where the ORM's unit of work was most of the client CPU; and
    ``_autocommit()`` for the reads a tick or an idle worker repeats (studies, history, failures, a study's
    state), the coordinator's lease, a heartbeat (two facts, each atomic on its own), and on PostgreSQL an
    epoch report and a finish: each one statement (the writes that belong together joined as data-modifying
    CTEs), so one round trip; a claim's writes are likewise one statement inside its transaction."""

    def __init__(self, engine: Engine, retry_seconds: float = 0.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; database errors become a one-line StoreError with the password masked."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction on a plain connection, no ORM session: the worker's per-trial writes run their
        prebuilt statements here (a session's unit of work is most of their client CPU)."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """For statements each atomic on its own (reads, a single conditional UPDATE): on PostgreSQL each one
        commits by itself, one round trip instead of three with BEGIN and COMMIT (the coordinator's tick runs
        several); SQLite, in-process, runs them in a transaction as usual."""
        if self.engine.dialect.name != "postgresql":
            with self._transaction() as connection:
                yield connection
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                yield connection
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc

    # --- studies -------------------------------------------------------------------------------------

    def create_study(
        self, study: Study, normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> tuple[Study, bool]:
        """Insert ``study``; a study of the same name and spec is returned as is (``created`` False).
        ``normalize`` turns a stored spec into today's form (fields added since it was stored take their
        defaults) before the comparison."""
        with self.session() as session:
            existing = session.scalar(select(Study).where(Study.name == study.name))
            if existing is not None:
                stored = normalize(existing.spec) if normalize is not None else existing.spec
                if stored != study.spec:
                    raise UsageError(
                        f"study {study.name}",
                        "exists with a different study file; rename the study or delete the old one",
                    )
                return existing, False
            session.add(study)
            session.flush()
            return study, True

    def study(self, name: str) -> Study:
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.name == name))
        if study is None:
            raise UsageError(f"study {name}", "no such study (see `hpsearch status`)")
        return study

    def studies(self, states: Sequence[str] | None = None) -> list[Study]:
        query = select(Study).order_by(Study.id)
        if states is not None:
            query = query.where(Study.state.in_(list(states)))
        with self._autocommit() as connection, Session(bind=connection, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def study_by_id(self, study_id: int) -> Study:
        with self.session() as session:
            return session.get_one(Study, study_id)

    def study_state(self, study_id: int) -> str:
        with self._autocommit() as connection:
            return connection.scalars(_STUDY_STATE, {"p_study": study_id}).one()

    def set_study_state(self, study_id: int, state: StudyState, message: str | None = None) -> None:
        with self.session() as session:
            session.execute(update(Study).where(Study.id == study_id).values(state=state, message=message))

    def extend_space(self, study_id: int, entries: Sequence[dict[str, Any]]) -> None:
        """Add parameters first declared outside ``build`` (in a HyperModel's ``fit``) to the space."""
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
            assert study is not None
            known = {e["config"]["name"] for e in study.space["space"]}
            new = [e for e in entries if e["config"]["name"] not in known]
            if new:
                study.space = {**study.space, "space": [*study.space["space"], *new]}

    # --- trials: planning ----------------------------------------------------------------------------

    def history(
        self,
        study_id: int,
        with_curves: bool = False,
        *,
        after_number: int | None = None,
        numbers: Sequence[int] = (),
    ) -> list[TrialView]:
        """A study's trials as strategies see them, in number order; ``with_curves`` adds each trial's objective
        per epoch. With ``after_number``, only the trials numbered above it and those in ``numbers`` (what a
        coordinator that keeps the history between ticks needs: finished trials never change)."""
        parent = Trial.__table__.alias("parent")
        which = Trial.study_id == study_id
        if after_number is not None:
            which = and_(which, or_(Trial.number > after_number, Trial.number.in_(list(numbers))))
        query = (
            select(
                Trial.id,
                Trial.number,
                Trial.state,
                Trial.params,
                Trial.objective,
                Trial.objective_values,
                Trial.best_epoch,
                Trial.epochs_done,
                Trial.budget_epochs,
                Trial.initial_epoch,
                Trial.bracket,
                Trial.rung,
                parent.c.number.label("parent_number"),
            )
            .outerjoin(parent, parent.c.id == Trial.parent_trial_id)
            .where(which)
            .order_by(Trial.number)
        )
        curves: dict[int, dict[int, float]] = {}
        with self._autocommit() as connection:
            rows = connection.execute(query).all()
            if with_curves and rows:
                metric = (
                    select(TrialMetric.trial_id, TrialMetric.epoch, TrialMetric.value)
                    .join(Trial, Trial.id == TrialMetric.trial_id)
                    .join(Study, Study.id == Trial.study_id)
                    .where(which, TrialMetric.name == Study.objective_name, TrialMetric.value.is_not(None))
                )
                for trial_id, epoch, value in connection.execute(metric):
                    curves.setdefault(trial_id, {})[epoch] = value
        return [
            TrialView(
                number=t.number,
                state=t.state,
                params=t.params,
                objective=t.objective,
                best_epoch=t.best_epoch,
                epochs_done=t.epochs_done,
                budget_epochs=t.budget_epochs,
                initial_epoch=t.initial_epoch,
                parent_number=t.parent_number,
                bracket=t.bracket,
                rung=t.rung,
                curve=curves.get(t.id, {}),
                values=tuple(t.objective_values) if t.objective_values else None,
            )
            for t in rows
        ]

    def add_trials(self, study: Study, new_trials: Sequence[NewTrial]) -> list[int]:
        """Queue trials with the next numbers; returns the numbers."""
        if not new_trials:
            return []
        with self._transaction() as connection:
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
            return [row["number"] for row in rows]

    def counts(self, study_id: int) -> dict[str, int]:
        query = select(Trial.state, func.count()).where(Trial.study_id == study_id).group_by(Trial.state)
        with self.session() as session:
            found = dict(session.execute(query).all())
        return {state.value: int(found.get(state.value, 0)) for state in TrialState}

    def consecutive_failures(self, study_id: int, up_to: int = 1000) -> int:
        """How many of the latest finished trials failed in a row, counting up to ``up_to``."""
        query = (
            select(Trial.state)
            .where(Trial.study_id == study_id, Trial.state.in_(list(FINISHED_STATES)))
            .order_by(Trial.finished_at.desc(), Trial.id.desc())
            .limit(up_to)
        )
        with self._autocommit() as connection:
            states = list(connection.scalars(query))
        run = 0
        for state in states:
            if state != TrialState.FAILED:
                break
            run += 1
        return run

    def expire_leases(self, max_retries_by_study: Mapping[int, int]) -> int:
        """RUNNING trials whose lease lapsed go back to QUEUED (or FAILED past max_retries)."""
        now = utcnow()
        expired_count = 0
        with self.session() as session:
            expired = session.scalars(
                select(Trial).where(Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now).with_for_update()
            ).all()
            for trial in expired:
                reason = f"lease expired at {trial.lease_expires_at:%Y-%m-%d %H:%M:%S} (worker {trial.worker_id} lost)"
                _retry_or_fail(session, trial, reason, max_retries_by_study.get(trial.study_id, 0), now)
                expired_count += 1
            jobs = session.scalars(
                select(FinalJob)
                .where(FinalJob.state == TrialState.RUNNING, FinalJob.lease_expires_at < now)
                .with_for_update()
            ).all()
            for job in jobs:
                _requeue_final_job(job, f"lease expired (worker {job.worker_id} lost)")
                expired_count += 1
        return expired_count

    # --- trials: the worker's side -------------------------------------------------------------------

    def claim(self, worker_id: int, study_id: int | None = None) -> ClaimedTrial | None:
        """Atomically take the oldest QUEUED trial of a RUNNING study.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent claimers never wait on or take the
        same row. SQLite: the transaction began with ``BEGIN IMMEDIATE`` (see db.py), so claims serialise.
        """
        with self._transaction() as connection:
            return _claim_trial(connection, worker_id, study_id)

    def claim_next(self, worker_id: int, study_id: int | None = None) -> ClaimedTrial | FinalJob | None:
        """A worker's next work, in one transaction: a trial first, else a promotion (final job) waiting for
        a worker. An idle worker asks at every poll; finding nothing costs two plain queries."""
        with self._transaction() as connection:
            return _claim_trial(connection, worker_id, study_id) or _claim_final_job(connection, worker_id, study_id)

    def _owned(self, trial_id: int, worker_id: int) -> Any:
        """_OWNED (the condition the prebuilt statements use) with this trial and worker bound."""
        return _OWNED.params(p_trial=trial_id, p_worker=worker_id)

    def heartbeat(self, trial_id: int, worker_id: int, lease_seconds: float) -> HeartbeatAnswer:
        """Renew the lease. ``lost``: another worker owns the trial now; ``stop``: the strategy stops (prunes)
        it; ``pause``: its study was stopped, so the trial goes back to the queue to resume later."""
        now = utcnow()
        owner = {"p_trial": trial_id, "p_worker": worker_id}
        with self._autocommit() as connection:  # two facts, each atomic on its own
            renewed = connection.execute(
                _HEARTBEAT, owner | {"p_lease": now + timedelta(seconds=lease_seconds)}
            ).first()
            connection.execute(_WORKER_SEEN, {"p_worker": worker_id, "p_now": now})
        if renewed is None:
            return "lost"
        if renewed.stop_requested:
            return "stop"
        return "pause" if renewed.study_state != StudyState.RUNNING else "continue"

    def record_epoch(
        self,
        trial_id: int,
        worker_id: int,
        epoch: int,
        logs: Mapping[str, float],
        objective: str,
        direction: str,
        other_objectives: Sequence[str] = (),
    ) -> bool:
        """Write one epoch's metrics (idempotent on (trial, epoch, name)) and the best objective so far, with
        every objective's value at that epoch. Returns False when the worker no longer owns the trial."""
        parameters: dict[str, Any] = {"p_trial": trial_id, "p_worker": worker_id, "p_epoch": epoch}
        value = logs.get(objective)
        scored = value is not None and math.isfinite(value)
        if value is not None and scored:
            others = (logs.get(name) for name in other_objectives)
            parameters["p_value"] = float(value)
            parameters["p_values"] = [float(value), *(None if v is None else _finite_or_none(v) for v in others)]
        # One UPDATE (row lock, epoch count, best objective compared in SQL) and one INSERT per epoch.
        with self._autocommit() as connection:
            if connection.dialect.name == "postgresql":
                names = {"p_names": list(logs), "p_logs": [_finite_or_none(float(v)) for v in logs.values()]}
                report = _report_with_metrics(direction, scored)
                return connection.execute(report, parameters | names | {"p_now": utcnow()}).first() is not None
            if connection.execute(_report(direction, scored), parameters).first() is None:
                return False
            _add_metrics(connection, TrialMetric, {"trial_id": trial_id, "epoch": epoch}, logs)
            return True

    def record_checkpoint(self, checkpoint: Artifact) -> str | None:
        """A trial keeps one checkpoint row, its latest; returns the file it replaces (now free to delete).
        Each epoch writes a new file, so the row always names a complete file whose sha256 it holds."""
        with self.session() as session:
            existing = session.scalar(
                select(Artifact)
                .where(Artifact.trial_id == checkpoint.trial_id, Artifact.kind == "checkpoint")
                .with_for_update()
            )
            session.execute(
                update(TrialAttempt)
                .where(TrialAttempt.trial_id == checkpoint.trial_id, TrialAttempt.ended_at.is_(None))
                .values(last_checkpoint_epoch=checkpoint.epoch)
            )
            if existing is None:
                session.add(checkpoint)
                return None
            replaced = existing.uri
            existing.epoch, existing.uri = checkpoint.epoch, checkpoint.uri
            existing.sha256, existing.size_bytes = checkpoint.sha256, checkpoint.size_bytes
            existing.created_at = utcnow()
            return replaced if replaced != checkpoint.uri else None

    def finish(
        self,
        trial_id: int,
        worker_id: int,
        state: TrialState,
        error: str | None = None,
        extra_params: Mapping[str, Value] | None = None,
    ) -> bool:
        """End a trial the worker owns (False if it does not): its state, duration and error (appended to an
        earlier attempt's), its attempt, the worker idle, and parameters it declared while training."""
        parameters = {
            "p_trial": trial_id, "p_worker": worker_id, "p_outcome": state, "p_error": error,
            "p_state": "IDLE", "p_now": utcnow(),
        }  # fmt: skip
        if not extra_params and self.engine.dialect.name == "postgresql":
            with self._autocommit() as connection:
                return connection.execute(_FINISH_ALL, parameters).first() is not None
        with self._transaction() as connection:
            trial = connection.execute(_FINISH, parameters).first()
            if trial is None:
                return False
            _together(connection, (_END_ATTEMPT, _WORKER_STATE), parameters)
            if extra_params:
                new = {k: v for k, v in extra_params.items() if k not in trial.params}
                connection.execute(update(Trial).where(Trial.id == trial_id).values(params={**trial.params, **new}))
                if new:
                    connection.execute(insert(TrialParam), [param_values(trial_id, k, v) for k, v in new.items()])
            return True

    def release(self, trial_id: int, worker_id: int) -> None:
        """Give a trial back to the queue unharmed (its study was stopped); it resumes from its checkpoint."""
        with self.session() as session:
            if session.scalar(select(Trial.id).where(self._owned(trial_id, worker_id))) is None:
                return
            _end_attempt(session.connection(), trial_id, "RELEASED", utcnow())
            session.execute(
                update(Trial)
                .where(self._owned(trial_id, worker_id))
                .values(state=TrialState.QUEUED, worker_id=None, lease_expires_at=None)
            )
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))

    def retry(self, trial_id: int, worker_id: int, reason: str) -> str | None:
        """After a crash: back to QUEUED to resume from its last checkpoint, or FAILED past max_retries.
        Returns the new state (None when this worker no longer owns the trial)."""
        with self.session() as session:
            trial = session.scalar(select(Trial).where(self._owned(trial_id, worker_id)).with_for_update())
            if trial is None:
                return None
            study = session.get_one(Study, trial.study_id)
            _retry_or_fail(session, trial, reason, study.spec["search"]["max_retries"], utcnow())
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return trial.state

    def restart_from_scratch(self, trial_id: int, worker_id: int, reason: str) -> None:
        """Its checkpoint was unusable: forget the trial's progress (metrics, objective) and say why."""
        with self.session() as session:
            trial = session.scalar(select(Trial).where(self._owned(trial_id, worker_id)).with_for_update())
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

    def hold_coordinator_lease(self, study_id: int, holder: str, lease_seconds: float) -> bool:
        """Take or renew the study's coordinator lease; False while another live coordinator holds it. One
        conditional UPDATE (the holder renews, anyone takes a lapsed lease), else an INSERT of a first lease
        that loses quietly to another coordinator's."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        lease = {"p_study": study_id, "p_holder": holder, "p_now": now, "p_expires": expires}
        with self._autocommit() as connection:
            if connection.execute(_TAKE_LEASE, lease).rowcount:
                return True
            first = {"study_id": study_id, "holder": holder, "expires_at": expires}
            taken = _insert_new(connection.dialect.name, CoordinatorLease).returning(CoordinatorLease.holder)
            return connection.execute(taken, first).first() is not None

    def close_queued(self, study_id: int, reason: str) -> int:
        """A budget ran out: trials still waiting will never start (PRUNED, with the reason)."""
        with self.session() as session:
            result = session.execute(
                update(Trial)
                .where(Trial.study_id == study_id, Trial.state == TrialState.QUEUED)
                .values(state=TrialState.PRUNED, error=reason, finished_at=utcnow())
            )
            return int(result.rowcount or 0)

    def checkpoints(self, study_id: int) -> list[Artifact]:
        query = select(Artifact).where(Artifact.study_id == study_id, Artifact.kind == "checkpoint")
        with self.session() as session:
            return list(session.scalars(query.order_by(Artifact.id)))

    def delete_artifacts(self, artifact_ids: Sequence[int]) -> None:
        with self.session() as session:
            session.execute(delete(Artifact).where(Artifact.id.in_(list(artifact_ids))))

    def attempts(self, trial_id: int) -> list[TrialAttempt]:
        with self.session() as session:
            query = select(TrialAttempt).where(TrialAttempt.trial_id == trial_id).order_by(TrialAttempt.attempt)
            return list(session.scalars(query))

    def request_stop(self, study_id: int, numbers: Sequence[int]) -> None:
        with self.session() as session:
            session.execute(
                update(Trial)
                .where(Trial.study_id == study_id, Trial.number.in_(list(numbers)), Trial.state == TrialState.RUNNING)
                .values(stop_requested=True)
            )

    # --- final jobs (promotions) -----------------------------------------------------------------------

    def create_final_job(self, job: FinalJob) -> tuple[FinalJob, bool]:
        """Queue a promotion, or return the study's job with the same trial and settings (``created`` False).
        A FAILED one is queued again: it resumes from its last backup."""
        with self.session() as session:
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
                    existing.state, existing.attempts, existing.finished_at = TrialState.QUEUED, 0, None
                return existing, False
            last = session.scalar(select(func.max(FinalJob.number)).where(FinalJob.study_id == job.study_id))
            job.number = (last or 0) + 1
            session.add(job)
            session.flush()
            return job, True

    def claim_final_job(
        self, worker_id: int, study_id: int | None = None, job_id: int | None = None
    ) -> FinalJob | None:
        """Take the oldest QUEUED final job (of a study, or the given one) with a lease, like :meth:`claim`."""
        with self._transaction() as connection:
            return _claim_final_job(connection, worker_id, study_id, job_id)

    def _owns_job(self, job_id: int, worker_id: int) -> Any:
        return and_(FinalJob.id == job_id, FinalJob.worker_id == worker_id, FinalJob.state == TrialState.RUNNING)

    def final_job_heartbeat(self, job_id: int, worker_id: int, lease_seconds: float) -> bool:
        """Renew the job's lease; False when this worker no longer owns it."""
        now = utcnow()
        with self.session() as session:
            renewed = session.execute(
                update(FinalJob)
                .where(self._owns_job(job_id, worker_id))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            session.execute(update(Worker).where(Worker.id == worker_id).values(last_heartbeat_at=now))
            return bool(renewed.rowcount)

    def record_final_epoch(self, job_id: int, worker_id: int, epoch: int, logs: Mapping[str, float]) -> bool:
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(self._owns_job(job_id, worker_id)).with_for_update())
            if job is None:
                return False
            _add_metrics(session.connection(), FinalJobMetric, {"final_job_id": job_id, "epoch": epoch}, logs)
            job.epochs_done = max(job.epochs_done, epoch)
            return True

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
        artifacts: Sequence[Artifact],
    ) -> bool:
        """Store the evaluation and the exported artifacts and mark the job COMPLETED, in one transaction."""
        now = utcnow()
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(self._owns_job(job_id, worker_id)).with_for_update())
            if job is None:
                return False
            for table in (FinalClassMetric, FinalSliceMetric):
                session.execute(delete(table).where(table.final_job_id == job_id))
            session.execute(delete(Artifact).where(Artifact.final_job_id == job_id))
            session.add_all(FinalClassMetric(final_job_id=job_id, **row) for row in class_rows)
            session.add_all(FinalSliceMetric(final_job_id=job_id, **row) for row in slice_rows)
            for artifact in artifacts:
                artifact.final_job_id, artifact.study_id = job_id, job.study_id
                session.add(artifact)
            job.state, job.finished_at, job.lease_expires_at = TrialState.COMPLETED, now, None
            job.best_epoch = best_epoch
            job.objective = _finite_or_none(objective) if objective is not None else None
            job.test_metrics = {k: _finite_or_none(float(v)) for k, v in test_metrics.items()}
            job.confusion_matrix = dict(confusion) if confusion is not None else None
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return True

    def fail_final_job(self, job_id: int, worker_id: int, error: str) -> None:
        """The job itself is broken (an exception, NaN): FAILED with the reason; running promote again retries."""
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(self._owns_job(job_id, worker_id)).with_for_update())
            if job is None:
                return
            job.state, job.finished_at, job.lease_expires_at = TrialState.FAILED, utcnow(), None
            job.error = f"{job.error}\n{error}" if job.error else error
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))

    def requeue_final_job(self, job_id: int, reason: str, worker_id: int | None = None) -> str | None:
        """Its process died (or its worker is gone): QUEUED again to resume from its backup, or FAILED after
        FINAL_JOB_MAX_ATTEMPTS. ``worker_id`` None takes the job from whoever held it. Returns the new state."""
        condition = self._owns_job(job_id, worker_id) if worker_id is not None else FinalJob.id == job_id
        with self.session() as session:
            job = session.scalar(select(FinalJob).where(condition).with_for_update())
            if job is None or job.state != TrialState.RUNNING:
                return None
            _requeue_final_job(job, reason)
            if worker_id is not None:
                session.execute(update(Worker).where(Worker.id == worker_id).values(state="IDLE"))
            return job.state

    def final_jobs(self, study_id: int) -> list[FinalJob]:
        with self.session() as session:
            return list(
                session.scalars(select(FinalJob).where(FinalJob.study_id == study_id).order_by(FinalJob.number))
            )

    def final_job(self, job_id: int) -> FinalJob:
        with self.session() as session:
            return session.get_one(FinalJob, job_id)

    def final_job_worker(self, job_id: int) -> Worker | None:
        with self.session() as session:
            return session.scalar(
                select(Worker).join(FinalJob, FinalJob.worker_id == Worker.id).where(FinalJob.id == job_id)
            )

    def final_artifacts(self, job_id: int) -> list[Artifact]:
        with self.session() as session:
            query = select(Artifact).where(Artifact.final_job_id == job_id).order_by(Artifact.id)
            return list(session.scalars(query))

    def final_evaluation(self, job_id: int) -> tuple[list[FinalClassMetric], list[FinalSliceMetric]]:
        with self.session() as session:
            classes = session.scalars(
                select(FinalClassMetric).where(FinalClassMetric.final_job_id == job_id).order_by(FinalClassMetric.id)
            )
            slices = session.scalars(
                select(FinalSliceMetric).where(FinalSliceMetric.final_job_id == job_id).order_by(FinalSliceMetric.id)
            )
            return list(classes), list(slices)

    def final_metrics(self, job_id: int) -> dict[int, dict[str, float | None]]:
        query = select(FinalJobMetric).where(FinalJobMetric.final_job_id == job_id)
        return self._curve(query.order_by(FinalJobMetric.epoch))

    # --- workers -------------------------------------------------------------------------------------

    def register_worker(self, name: str, host: str, pid: int, gpu: str | None) -> int:
        with self.session() as session:
            worker = Worker(name=name, host=host, pid=pid, gpu=gpu)
            session.add(worker)
            session.flush()
            return worker.id

    def worker_alive(self, worker_id: int, state: str) -> None:
        with self._autocommit() as connection:
            connection.execute(_WORKER_STATE, {"p_worker": worker_id, "p_state": state, "p_now": utcnow()})

    def worker_stopped(self, worker_id: int) -> None:
        with self.session() as session:
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="STOPPED", stopped_at=utcnow()))

    def live_workers(self, within_seconds: float) -> int:
        since = utcnow() - timedelta(seconds=within_seconds)
        query = (
            select(func.count()).select_from(Worker).where(Worker.state != "STOPPED", Worker.last_heartbeat_at >= since)
        )
        with self.session() as session:
            return int(session.scalar(query) or 0)

    # --- reading -------------------------------------------------------------------------------------

    def trials(
        self, study_id: int, sort: str = "number", limit: int | None = None, direction: str = "max"
    ) -> list[Trial]:
        order: Any
        if sort == "objective":
            column = Trial.objective.desc() if direction == "max" else Trial.objective.asc()
            order = (Trial.objective.is_(None), column, Trial.number)
        else:
            order = (Trial.number,)
        query = select(Trial).where(Trial.study_id == study_id).order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as session:
            return list(session.scalars(query))

    def trial(self, study_id: int, number: int) -> Trial:
        with self.session() as session:
            trial = session.scalar(select(Trial).where(Trial.study_id == study_id, Trial.number == number))
        if trial is None:
            raise UsageError(f"trial {number}", "no such trial in this study")
        return trial

    def best_trial(self, study: Study) -> Trial | None:
        completed = [
            t for t in self.trials(study.id, sort="objective", direction=study.direction) if t.objective is not None
        ]
        usable = [t for t in completed if t.state == TrialState.COMPLETED]
        return usable[0] if usable else None

    def trial_by_id(self, trial_id: int) -> Trial:
        with self.session() as session:
            return session.get_one(Trial, trial_id)

    def metrics(self, trial_id: int) -> dict[int, dict[str, float | None]]:
        return self._curve(select(TrialMetric).where(TrialMetric.trial_id == trial_id).order_by(TrialMetric.epoch))

    def _curve(self, query: Any) -> dict[int, dict[str, float | None]]:
        """Metric rows (trial_metrics or final_job_metrics, ordered by epoch) as {epoch: {name: value}}."""
        curve: dict[int, dict[str, float | None]] = {}
        with self.session() as session:
            for row in session.scalars(query):
                curve.setdefault(row.epoch, {})[row.name] = row.value
        return curve


@functools.cache
def claim_query(one_study: bool) -> Any:
    """The oldest QUEUED trial of a RUNNING study (with ``one_study``: of study ``p_study``), locked, with its
    study's name and [run] settings (one round trip); ix_trials_claim / ix_trials_state_id serve it."""
    query = (
        select(
            Trial.id,
            Trial.study_id,
            Trial.number,
            Trial.params,
            Trial.budget_epochs,
            Trial.initial_epoch,
            Trial.parent_trial_id,
            Trial.seed,
            Trial.started_at,
            Trial.error,
            Study.name.label("study_name"),
            Study.spec["run"].label("run"),
        )
        .join(Study, Study.id == Trial.study_id)
        .where(Trial.state == TrialState.QUEUED, Study.state == StudyState.RUNNING)
        .order_by(Trial.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Trial)
    )
    if one_study:
        query = query.where(Trial.study_id == bindparam("p_study"))
    return query


class SecondsSince(FunctionElement[float]):
    """Seconds from a DateTime column to a DateTime value, computed by the database."""

    type = Float()
    inherit_cache = True


@compiles(SecondsSince, "postgresql")
def _seconds_since_postgresql(element: SecondsSince, compiler: Any, **kw: Any) -> str:
    start, end = element.clauses
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@compiles(SecondsSince)
def _seconds_since_sqlite(element: SecondsSince, compiler: Any, **kw: Any) -> str:
    start, end = element.clauses
    return f"(julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0"


# --- the worker's per-trial statements, built once (bind parameters are p_*: a name that is also a column's
# would add that column to an UPDATE's SET) ---------------------------------------------------------------

_NOW = bindparam("p_now", type_=DateTime)
_STUDY_STATE = select(Study.state).where(Study.id == bindparam("p_study"))
_OWNED = and_(
    Trial.id == bindparam("p_trial"), Trial.worker_id == bindparam("p_worker"), Trial.state == TrialState.RUNNING
)
_CLAIM = (
    update(Trial)
    .where(Trial.id == bindparam("p_trial"))
    .values(
        state=TrialState.RUNNING,
        worker_id=bindparam("p_worker"),
        lease_expires_at=bindparam("p_lease", type_=DateTime),
        stop_requested=False,
        started_at=bindparam("p_started", type_=DateTime),
        error=bindparam("p_error"),
    )
)
_LATEST_CHECKPOINT = (
    select(Artifact.epoch, Artifact.uri, Artifact.sha256)
    .where(Artifact.trial_id == bindparam("p_trial"), Artifact.kind == "checkpoint")
    .order_by(Artifact.id.desc())
    .limit(1)
)
_ATTEMPTS = select(func.count()).where(TrialAttempt.trial_id == bindparam("p_trial"))
_NEW_ATTEMPT = insert(TrialAttempt).values(
    trial_id=bindparam("p_trial"),
    attempt=bindparam("p_attempt"),
    worker_id=bindparam("p_worker"),
    start_epoch=bindparam("p_start_epoch"),
    started_at=_NOW,
)
_HEARTBEAT = (
    update(Trial)
    .where(_OWNED)
    .values(lease_expires_at=bindparam("p_lease", type_=DateTime))
    .returning(
        Trial.stop_requested,
        select(Study.state).where(Study.id == Trial.study_id).scalar_subquery().label("study_state"),
    )
)
_ERROR = bindparam("p_error", type_=Text)
_FINISH = (
    update(Trial)
    .where(_OWNED)
    .values(
        state=bindparam("p_outcome"),
        finished_at=_NOW,
        lease_expires_at=None,
        duration_seconds=SecondsSince(Trial.started_at, _NOW),
        error=case((_ERROR.is_(None), Trial.error), (Trial.error.is_(None), _ERROR), else_=Trial.error + "\n" + _ERROR),
    )
    .returning(Trial.params)
)
_END_ATTEMPT = (
    update(TrialAttempt)
    .where(TrialAttempt.trial_id == bindparam("p_trial"), TrialAttempt.ended_at.is_(None))
    .values(outcome=bindparam("p_outcome"), ended_at=_NOW)
)
_TAKE_LEASE = (
    update(CoordinatorLease)
    .where(
        CoordinatorLease.study_id == bindparam("p_study"),
        or_(CoordinatorLease.holder == bindparam("p_holder"), CoordinatorLease.expires_at <= _NOW),
    )
    .values(holder=bindparam("p_holder"), expires_at=bindparam("p_expires", type_=DateTime))
)
_WORKER_SEEN = update(Worker).where(Worker.id == bindparam("p_worker")).values(last_heartbeat_at=_NOW)
_WORKER_STATE = _WORKER_SEEN.values(state=bindparam("p_state"))


@functools.cache
def _report(direction: str, scored: bool) -> Any:
    """An epoch's UPDATE of its trial: the epoch count and, when the epoch has a finite objective, the best
    objective so far (compared in SQL under the row lock), its epoch and every objective's value there."""
    epoch = bindparam("p_epoch", type_=Integer)
    changes: dict[str, Any] = {"epochs_done": case((Trial.epochs_done < epoch, epoch), else_=Trial.epochs_done)}
    if scored:
        value = bindparam("p_value", type_=Float)
        improves = Trial.objective > value if direction == "min" else Trial.objective < value
        better = or_(Trial.objective.is_(None), improves)
        changes |= {
            "objective": case((better, value), else_=Trial.objective),
            "best_epoch": case((better, epoch), else_=Trial.best_epoch),
            "objective_values": case((better, bindparam("p_values", type_=JSON)), else_=Trial.objective_values),
        }
    return update(Trial).where(_OWNED).values(changes).returning(Trial.id)


# --- PostgreSQL runs writes that belong together as one statement (data-modifying CTEs): one round trip,
# atomic on its own, so outside a transaction it needs no BEGIN and COMMIT either (a transaction of two
# statements is four round trips). SQLite, in-process, runs the same writes one after another. -------------


def _together(connection: Connection, statements: Sequence[Any], parameters: dict[str, Any]) -> None:
    """Run unconditional writes (bind parameters all in ``parameters``) in one round trip on PostgreSQL."""
    if connection.dialect.name == "postgresql":
        connection.execute(_as_one(tuple(statements)), parameters)
    else:
        for statement in statements:
            connection.execute(statement, parameters)


@functools.cache
def _as_one(statements: tuple[Any, ...]) -> Any:
    return select(literal(1)).add_cte(*(s.cte(f"write_{i}") for i, s in enumerate(statements)))


_FINISHED = _FINISH.cte("finished")
# Finish a trial (if the worker still owns it), end its attempt and mark its worker idle: one statement.
_FINISH_ALL = select(_FINISHED.c.params).add_cte(
    _END_ATTEMPT.where(exists(_FINISHED.select())).cte("ended"),
    _WORKER_STATE.where(exists(_FINISHED.select())).cte("idle"),
)


@functools.cache
def _report_with_metrics(direction: str, scored: bool) -> Any:
    """_report and the epoch's metric rows (``p_names``, ``p_logs``; a row already there is kept), one
    PostgreSQL statement; it returns a row only when the worker still owns the trial."""
    reported = _report(direction, scored).cte("reported")
    logs = (
        func.unnest(cast(bindparam("p_names"), ARRAY(String)), cast(bindparam("p_logs"), ARRAY(Float)))
        .table_valued("name", "value")
        .render_derived("logs")
    )
    rows = select(reported.c.id, bindparam("p_epoch", type_=Integer), logs.c.name, logs.c.value, _NOW)
    metrics = postgresql.insert(TrialMetric).from_select(
        ["trial_id", "epoch", "name", "value", "recorded_at"], rows.select_from(reported.join(logs, true()))
    )
    return select(reported.c.id).add_cte(metrics.on_conflict_do_nothing().cte("metrics"))


@functools.cache
def _insert_new(dialect: str, table: Any) -> Any:
    """INSERT that keeps a row already there (a repeated metric report, a lease another coordinator took)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing()


def _claim_trial(connection: Connection, worker_id: int, study_id: int | None) -> ClaimedTrial | None:
    """The body of Store.claim, in the caller's transaction."""
    now = utcnow()
    row = connection.execute(claim_query(study_id is not None), {"p_study": study_id}).first()
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
            checkpoint = connection.execute(_LATEST_CHECKPOINT, {"p_trial": source_id}).first()
    error = row.error
    if checkpoint is None and row.parent_trial_id is not None:
        note = f"parent's checkpoint is gone (freed?); training from epoch 0, not {row.initial_epoch}"
        error = f"{error}\n{note}" if error else note
    attempts: int = connection.scalar(_ATTEMPTS, {"p_trial": trial_id}) if claimed_before else 0
    start_epoch = (checkpoint.epoch or 0) if checkpoint else 0
    claim = {
        "p_trial": trial_id, "p_worker": worker_id, "p_lease": now + timedelta(seconds=row.run["lease_seconds"]),
        "p_started": row.started_at or now, "p_error": error, "p_attempt": attempts + 1,
        "p_start_epoch": start_epoch, "p_now": now, "p_state": "BUSY",
    }  # fmt: skip
    _together(connection, (_CLAIM, _NEW_ATTEMPT, _WORKER_STATE), claim)
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
    )


@functools.cache
def _final_job_query(one_job: bool, one_study: bool) -> Any:
    """The oldest QUEUED final job (``p_job``, of study ``p_study``), locked, skipping those others hold."""
    query = select(FinalJob.id).where(FinalJob.state == TrialState.QUEUED).order_by(FinalJob.id).limit(1)
    if one_job:
        query = query.where(FinalJob.id == bindparam("p_job"))
    if one_study:
        query = query.where(FinalJob.study_id == bindparam("p_study"))
    return query.with_for_update(skip_locked=True)


def _claim_final_job(
    connection: Connection, worker_id: int, study_id: int | None, job_id: int | None = None
) -> FinalJob | None:
    """The body of Store.claim_final_job, in the caller's transaction; finding none is one plain query."""
    query = _final_job_query(job_id is not None, study_id is not None)
    found = connection.scalar(query, {"p_job": job_id, "p_study": study_id})
    if found is None:
        return None
    now = utcnow()
    session = Session(bind=connection, expire_on_commit=False)  # joins the caller's transaction
    job = session.get_one(FinalJob, found)
    study = session.get_one(Study, job.study_id)
    job.state, job.worker_id = TrialState.RUNNING, worker_id
    job.lease_expires_at = now + timedelta(seconds=study.spec["run"]["lease_seconds"])
    job.started_at = job.started_at or now
    job.attempts += 1
    session.flush()
    session.close()
    connection.execute(_WORKER_STATE, {"p_worker": worker_id, "p_state": "BUSY", "p_now": now})
    return job


def _add_metrics(connection: Connection, table: Any, owner: dict[str, int], logs: Mapping[str, float]) -> None:
    """One epoch's logs as metric rows of ``owner``; a row already there is kept (writes are idempotent)."""
    now = utcnow()
    rows = [
        {**owner, "name": name, "value": _finite_or_none(float(value)), "recorded_at": now}
        for name, value in logs.items()
    ]
    if rows:
        connection.execute(_insert_new(connection.dialect.name, table), rows)


def _end_attempt(connection: Connection, trial_id: int, outcome: str, now: Any) -> None:
    connection.execute(_END_ATTEMPT, {"p_trial": trial_id, "p_outcome": outcome, "p_now": now})


def _retry_or_fail(session: Session, trial: Trial, reason: str, max_retries: int, now: Any) -> None:
    _end_attempt(session.connection(), trial.id, "LOST", now)
    trial.error = f"{trial.error}\n{reason}" if trial.error else reason
    trial.retries += 1
    trial.lease_expires_at = None
    if trial.retries > max_retries:
        trial.state = TrialState.FAILED
        trial.finished_at = now
        trial.duration_seconds = (now - trial.started_at).total_seconds() if trial.started_at else None
    else:
        trial.state = TrialState.QUEUED
        trial.worker_id = None


def _requeue_final_job(job: FinalJob, reason: str) -> None:
    job.error = f"{job.error}\n{reason}" if job.error else reason
    job.lease_expires_at = None
    if job.attempts >= FINAL_JOB_MAX_ATTEMPTS:
        job.state, job.finished_at = TrialState.FAILED, utcnow()
    else:
        job.state, job.worker_id = TrialState.QUEUED, None


def _lost_connection(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OperationalError | InterfaceError) or bool(getattr(cause, "connection_invalidated", False))


def _retrying(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except StoreError as exc:
                if not _lost_connection(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying %s in %.1fs", exc.what, method.__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return wrapper


for _name, _method in list(vars(Store).items()):
    if callable(_method) and not _name.startswith("_") and _name != "session":
        setattr(Store, _name, _retrying(_method))
