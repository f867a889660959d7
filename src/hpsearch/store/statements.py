"""The prebuilt Core statements of the hot path (claim, heartbeat, epoch report, finish, leases), built once.

Bind parameters are named ``p_*``: a name that is also a column's would add that column to an UPDATE's SET.
The state guards come from the state machine (:mod:`hpsearch.store.states`). On PostgreSQL writes that belong
together run as one statement (data-modifying CTEs): one round trip, atomic on its own, so outside a
transaction it needs no BEGIN and COMMIT either (a transaction of two statements is four round trips).
SQLite, in-process, runs the same writes one after another.

Example::

    >>> from hpsearch.store.statements import claim_query
    >>> "FOR UPDATE" in str(claim_query(True).compile(dialect=__import__("sqlalchemy").dialects.postgresql.dialect()))
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
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
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hpsearch.space import Value
from hpsearch.store.models import (
    FINISHED_STATES,
    Artifact,
    CoordinatorLease,
    FinalJob,
    Study,
    StudyState,
    Trial,
    TrialAttempt,
    TrialMetric,
    TrialState,
    Worker,
)
from hpsearch.store.states import FINAL_JOB_TRANSITIONS, guard


def param_values(trial_id: int, name: str, value: Value) -> dict[str, Any]:
    """One typed trial_params row as column values (for a Core INSERT); ints also fill value_float so numeric
    filters work on both. Example: ``param_values(1, "units", 8)["value_float"]`` is 8.0."""
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


def finite_or_none(value: float) -> float | None:
    """NaN and infinities are stored as NULL (JSON and both databases disagree on them)."""
    return value if math.isfinite(value) else None


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
            Trial.attempt,
            Study.name.label("study_name"),
            Study.spec["run"].label("run"),
        )
        .join(Study, Study.id == Trial.study_id)
        .where(guard(Trial.state, TrialState.QUEUED, TrialState.RUNNING), Study.state == StudyState.RUNNING)
        .order_by(Trial.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Trial)
    )
    if one_study:
        query = query.where(Trial.study_id == bindparam("p_study"))
    return query


class SecondsSince(FunctionElement[float]):
    """Seconds from a DateTime column to a DateTime value, computed by the database.
    Example: ``SecondsSince(Trial.started_at, NOW)`` (a trial's duration at finish)."""

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


class DbNow(FunctionElement[datetime]):
    """The database server's clock (naive UTC, as every DateTime column holds it), read by the statement.

    Why: leases are written by workers and judged by coordinators on other machines; a worker an hour behind
    would lose every claim and one an hour ahead would hold dead trials an hour. With every lease and every
    timestamp compared across machines taken from this one clock, a node's own clock never matters. SQLite is
    in-process, so its "now" is the one machine's clock (six-digit fractions: SQLAlchemy's storage format,
    which keeps stored strings comparable)."""

    type = DateTime()
    inherit_cache = True


@compiles(DbNow, "postgresql")
def _db_now_postgresql(element: DbNow, compiler: Any, **kw: Any) -> str:
    return "(now() AT TIME ZONE 'utc')"


@compiles(DbNow)
def _db_now_sqlite(element: DbNow, compiler: Any, **kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


class DbNowPlus(FunctionElement[datetime]):
    """The database server's clock plus a number of seconds (a lease's end; negative: a time ago). Example:
    ``DbNowPlus(bindparam("p_lease_seconds", type_=Float))``."""

    type = DateTime()
    inherit_cache = True


@compiles(DbNowPlus, "postgresql")
def _now_plus_postgresql(element: DbNowPlus, compiler: Any, **kw: Any) -> str:
    (seconds,) = element.clauses
    return f"((now() AT TIME ZONE 'utc') + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(DbNowPlus)
def _now_plus_sqlite(element: DbNowPlus, compiler: Any, **kw: Any) -> str:
    (seconds,) = element.clauses
    modifier = f"printf('%+.6f seconds', {compiler.process(seconds, **kw)})"
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', {modifier}) || '000')"


def lease_until(name: str = "p_lease_seconds") -> DbNowPlus:
    """A lease's end: the database's clock plus the seconds bound as ``name``."""
    return DbNowPlus(bindparam(name, type_=Float))


def seconds_from_now(seconds: float) -> DbNowPlus:
    """The database's clock plus ``seconds`` (a literal value bound in place; negative for the past)."""
    return DbNowPlus(literal(float(seconds), Float))


# Every "now" a statement writes or compares is the database server's (``p_now`` given by callers is unused).
NOW = DbNow()
STUDY_STATE = select(Study.state).where(Study.id == bindparam("p_study"))
# A trial this worker owns: RUNNING, held by ``p_worker`` in attempt ``p_attempt`` (its fencing token, from
# its claim); from there it finishes or goes back to the queue. A worker paused past its lease whose trial
# was claimed again (even by itself) no longer matches: its late writes change nothing. A caller that passes
# no attempt (None: tools and tests) is fenced by the worker alone.
OWNED = and_(
    Trial.id == bindparam("p_trial"),
    Trial.worker_id == bindparam("p_worker"),
    Trial.attempt == func.coalesce(bindparam("p_attempt", type_=Integer), Trial.attempt),
    guard(Trial.state, TrialState.RUNNING, *FINISHED_STATES, TrialState.QUEUED),
)
CLAIM = (
    update(Trial)
    .where(Trial.id == bindparam("p_trial"))
    .values(
        state=TrialState.RUNNING,
        worker_id=bindparam("p_worker"),
        attempt=bindparam("p_attempt", type_=Integer),
        lease_expires_at=lease_until(),
        stop_requested=False,
        started_at=func.coalesce(Trial.started_at, NOW),
        error=bindparam("p_error"),
    )
)
LATEST_CHECKPOINT = (
    select(Artifact.epoch, Artifact.uri, Artifact.sha256)
    .where(Artifact.trial_id == bindparam("p_trial"), Artifact.kind == "checkpoint")
    .order_by(Artifact.id.desc())
    .limit(1)
)
NEW_ATTEMPT = insert(TrialAttempt).values(
    trial_id=bindparam("p_trial"),
    attempt=bindparam("p_attempt"),
    worker_id=bindparam("p_worker"),
    start_epoch=bindparam("p_start_epoch"),
    started_at=NOW,
)
HEARTBEAT = (
    update(Trial)
    .where(OWNED)
    .values(lease_expires_at=lease_until())
    .returning(
        Trial.stop_requested,
        select(Study.state).where(Study.id == Trial.study_id).scalar_subquery().label("study_state"),
    )
)
_ERROR = bindparam("p_error", type_=Text)
FINISH = (
    update(Trial)
    .where(OWNED)
    .values(
        state=bindparam("p_outcome"),
        finished_at=NOW,
        lease_expires_at=None,
        duration_seconds=SecondsSince(Trial.started_at, NOW),
        error=case((_ERROR.is_(None), Trial.error), (Trial.error.is_(None), _ERROR), else_=Trial.error + "\n" + _ERROR),
    )
    .returning(Trial.params)
)
END_ATTEMPT = (
    update(TrialAttempt)
    .where(TrialAttempt.trial_id == bindparam("p_trial"), TrialAttempt.ended_at.is_(None))
    .values(outcome=bindparam("p_outcome"), ended_at=NOW)
)
TAKE_LEASE = (
    update(CoordinatorLease)
    .where(
        CoordinatorLease.study_id == bindparam("p_study"),
        or_(CoordinatorLease.holder == bindparam("p_holder"), CoordinatorLease.expires_at <= NOW),
    )
    .values(holder=bindparam("p_holder"), expires_at=lease_until())
)
WORKER_SEEN = update(Worker).where(Worker.id == bindparam("p_worker")).values(last_heartbeat_at=NOW)
WORKER_STATE = WORKER_SEEN.values(state=bindparam("p_state"))


@functools.cache
def report(direction: str, scored: bool) -> Any:
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
    return update(Trial).where(OWNED).values(changes).returning(Trial.id)


def together(connection: Connection, statements: Sequence[Any], parameters: dict[str, Any]) -> None:
    """Run unconditional writes (bind parameters all in ``parameters``) in one round trip on PostgreSQL."""
    if connection.dialect.name == "postgresql":
        connection.execute(_as_one(tuple(statements)), parameters)
    else:
        for statement in statements:
            connection.execute(statement, parameters)


@functools.cache
def _as_one(statements: tuple[Any, ...]) -> Any:
    return select(literal(1)).add_cte(*(s.cte(f"write_{i}") for i, s in enumerate(statements)))


_FINISHED = FINISH.cte("finished")
# Finish a trial (if the worker still owns it), end its attempt and mark its worker idle: one statement.
FINISH_ALL = select(_FINISHED.c.params).add_cte(
    END_ATTEMPT.where(exists(_FINISHED.select())).cte("ended"),
    WORKER_STATE.where(exists(_FINISHED.select())).cte("idle"),
)


@functools.cache
def report_with_metrics(direction: str, scored: bool) -> Any:
    """report() and the epoch's metric rows (``p_names``, ``p_logs``; a row already there is kept), one
    PostgreSQL statement; it returns a row only when the worker still owns the trial."""
    reported = report(direction, scored).cte("reported")
    logs = (
        func.unnest(cast(bindparam("p_names"), ARRAY(String)), cast(bindparam("p_logs"), ARRAY(Float)))
        .table_valued("name", "value")
        .render_derived("logs")
    )
    rows = select(reported.c.id, bindparam("p_epoch", type_=Integer), logs.c.name, logs.c.value, NOW)
    metrics = postgresql.insert(TrialMetric).from_select(
        ["trial_id", "epoch", "name", "value", "recorded_at"], rows.select_from(reported.join(logs, true()))
    )
    return select(reported.c.id).add_cte(metrics.on_conflict_do_nothing().cte("metrics"))


@functools.cache
def insert_new(dialect: str, table: Any) -> Any:
    """INSERT that keeps a row already there (a repeated metric report, a lease another coordinator took)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing()


@functools.cache
def final_job_query(one_job: bool, one_study: bool) -> Any:
    """The oldest QUEUED final job (``p_job``, of study ``p_study``), locked, skipping those others hold."""
    claimable = guard(FinalJob.state, TrialState.QUEUED, TrialState.RUNNING, table=FINAL_JOB_TRANSITIONS)
    query = select(FinalJob.id).where(claimable).order_by(FinalJob.id).limit(1)
    if one_job:
        query = query.where(FinalJob.id == bindparam("p_job"))
    if one_study:
        query = query.where(FinalJob.study_id == bindparam("p_study"))
    return query.with_for_update(skip_locked=True)


def add_metrics(connection: Connection, table: Any, owner: dict[str, int], logs: Mapping[str, float]) -> None:
    """One epoch's logs as metric rows of ``owner``; a row already there is kept (writes are idempotent)."""
    rows = [{**owner, "name": name, "value": finite_or_none(float(value))} for name, value in logs.items()]
    if rows:
        connection.execute(insert_new(connection.dialect.name, table).values(recorded_at=NOW), rows)


def end_attempt(connection: Connection, trial_id: int, outcome: str) -> None:
    """Close a trial's open attempt with ``outcome`` (LOST, RELEASED, or the trial's final state)."""
    connection.execute(END_ATTEMPT, {"p_trial": trial_id, "p_outcome": outcome})


def db_now(connection: Connection) -> datetime:
    """The database server's clock now (naive UTC), for a value computed in Python (a duration)."""
    now = connection.scalar(select(NOW))
    assert isinstance(now, datetime)
    return now
