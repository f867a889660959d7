"""What the coordinator reads and holds each tick: a study's history as the strategies see it, counts by
state, the run of failures, lapsed leases, and its own lease on a study.

Example::

    history = store.history(study.id, with_curves=True)
    if store.hold_coordinator_lease(study.id, "coordinator@host", 30):
        store.expire_leases({study.id: 2})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select

from hpsearch.records import TrialView
from hpsearch.store.database import Database, retrying
from hpsearch.store.final_jobs import requeue
from hpsearch.store.models import (
    FINISHED_STATES,
    CoordinatorLease,
    FinalJob,
    Study,
    Trial,
    TrialMetric,
    TrialState,
)
from hpsearch.store.queue import retry_or_fail
from hpsearch.store.statements import TAKE_LEASE, db_now, insert_new, lease_until


class Planning(Database):
    """The coordinator's reads and leases (see :mod:`hpsearch.store.planning`)."""

    @retrying
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
        curves: dict[int, dict[int, float]] = {}  # values are never NULL: the query skips those
        with self.autocommit() as connection:
            rows = connection.execute(query).all()
            if with_curves and rows:
                metric = (
                    select(TrialMetric.trial_id, TrialMetric.epoch, TrialMetric.value)
                    .join(Trial, Trial.id == TrialMetric.trial_id)
                    .join(Study, Study.id == Trial.study_id)
                    .where(which, TrialMetric.name == Study.objective_name, TrialMetric.value.is_not(None))
                )
                for trial_id, epoch, value in connection.execute(metric):
                    curves.setdefault(trial_id, {})[epoch] = value  # type: ignore[assignment]
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

    @retrying
    def counts(self, study_id: int) -> dict[str, int]:
        """How many trials are in each state (every state present, 0 when none). Example: ``counts["QUEUED"]``."""
        query = select(Trial.state, func.count()).where(Trial.study_id == study_id).group_by(Trial.state)
        with self.session() as session:
            found = {state: count for state, count in session.execute(query).all()}
        return {state.value: int(found.get(state.value, 0)) for state in TrialState}

    @retrying
    def consecutive_failures(self, study_id: int, up_to: int = 1000, since: datetime | None = None) -> int:
        """How many of the latest finished trials failed in a row, counting up to ``up_to``; with ``since``
        (a resumed FAILED study's ``failures_reset_at``) only trials finished after it."""
        query = (
            select(Trial.state)
            .where(Trial.study_id == study_id, Trial.state.in_(list(FINISHED_STATES)))
            .order_by(Trial.finished_at.desc(), Trial.id.desc())
            .limit(up_to)
        )
        if since is not None:
            query = query.where(Trial.finished_at > since)
        with self.autocommit() as connection:
            states = list(connection.scalars(query))
        run = 0
        for state in states:
            if state != TrialState.FAILED:
                break
            run += 1
        return run

    @retrying
    def expire_leases(self, max_retries_by_study: Mapping[int, int]) -> int:
        """RUNNING trials whose lease lapsed go back to QUEUED (or FAILED past max_retries); so do RUNNING
        final jobs (FAILED after FINAL_JOB_MAX_ATTEMPTS). Returns how many of both. A lease lapses by the
        database server's clock, the one that wrote it: the coordinator's own clock never matters."""
        expired_count = 0
        with self.session() as session:
            now = db_now(session.connection())
            expired = session.scalars(
                select(Trial).where(Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now).with_for_update()
            ).all()
            for trial in expired:
                reason = f"lease expired at {trial.lease_expires_at:%Y-%m-%d %H:%M:%S} (worker {trial.worker_id} lost)"
                retry_or_fail(session, trial, reason, max_retries_by_study.get(trial.study_id, 0), now)
                expired_count += 1
            jobs = session.scalars(
                select(FinalJob)
                .where(FinalJob.state == TrialState.RUNNING, FinalJob.lease_expires_at < now)
                .with_for_update()
            ).all()
            for job in jobs:
                requeue(job, f"lease expired (worker {job.worker_id} lost)")
                expired_count += 1
        return expired_count

    @retrying
    def hold_coordinator_lease(self, study_id: int, holder: str, lease_seconds: float) -> bool:
        """Take or renew the study's coordinator lease; False while another live coordinator holds it. One
        conditional UPDATE (the holder renews, anyone takes a lapsed lease), else an INSERT of a first lease
        that loses quietly to another coordinator's. Times are the database server's clock."""
        lease = {"p_study": study_id, "p_holder": holder, "p_lease_seconds": float(lease_seconds)}
        with self.autocommit() as connection:
            if connection.execute(TAKE_LEASE, lease).rowcount:
                return True
            first = insert_new(connection.dialect.name, CoordinatorLease).values(
                study_id=bindparam("p_study"), holder=bindparam("p_holder"), expires_at=lease_until()
            )
            return connection.execute(first.returning(CoordinatorLease.holder), lease).first() is not None
