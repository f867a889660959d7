"""Storage conformance, part 2: studies, planning reads, the best trial, final jobs, workers, frozen records and
the explicit retries, through the public Store methods on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from hpsearch.errors import StoreError, UsageError
from hpsearch.records import NewTrial
from hpsearch.store import NewArtifact, NewFinalJob, Store, StudyRecord, StudyState, TrialState
from hpsearch.store import database as database_module
from hpsearch.store.database import Database, retrying
from hpsearch.store.db import make_engine
from hpsearch.store.final_jobs import FINAL_JOB_MAX_ATTEMPTS

from ..conftest import add_study


def finished(store: Store, study: StudyRecord, objectives: list[float | None], state: str = "COMPLETED") -> None:
    """Trials with these objectives (None: no epoch reported), run to ``state`` one after another."""
    store.add_trials(study, [NewTrial({"i": i}, 1) for i in range(len(objectives))])
    worker = store.register_worker(f"w{study.id}-{len(objectives)}-{state}", "h", 1, None)
    for value in objectives:
        claimed = store.claim(worker, study.id)
        assert claimed is not None
        if value is not None:
            store.record_epoch(claimed.trial_id, worker, 1, {"m": value}, "m", study.direction)
        store.finish(claimed.trial_id, worker, TrialState(state))


def test_studies_are_created_once_read_and_changed_by_methods(store: Store) -> None:
    study = add_study(store, "one")
    other = add_study(store, "two")
    assert store.study("one") == study and store.study_by_id(other.id) == other
    with pytest.raises(UsageError, match="study nope: no such study"):
        store.study("nope")
    store.set_study_state(other.id, StudyState.STOPPED, "by hand")
    assert [s.name for s in store.studies([StudyState.RUNNING])] == ["one"]
    assert [s.name for s in store.studies()] == ["one", "two"]
    assert (store.study_state(other.id), store.study("two").message) == ("STOPPED", "by hand")
    entry = {"class_name": "Int", "config": {"name": "late"}}
    store.extend_space(study.id, [entry])
    store.extend_space(study.id, [entry])  # known already: added once
    assert store.study("one").space["space"] == [entry]


def test_history_counts_and_failures_as_the_coordinator_sees_them(store: Store) -> None:
    study = add_study(store)
    study = StudyRecord(**dataclasses.asdict(study) | {"objective_name": "m"})
    finished(store, study, [0.5, 0.7])
    finished(store, study, [None, None], state="FAILED")
    store.add_trials(study, [NewTrial({"i": 9}, 3, initial_epoch=1, parent_number=1, bracket=0, rung=1)])
    history = store.history(study.id)
    assert [(t.number, t.state, t.objective) for t in history] == [
        (0, "COMPLETED", 0.5), (1, "COMPLETED", 0.7), (2, "FAILED", None), (3, "FAILED", None), (4, "QUEUED", None),
    ]  # fmt: skip
    assert (history[4].parent_number, history[4].bracket, history[4].rung) == (1, 0, 1)
    assert [t.number for t in store.history(study.id, after_number=3, numbers=[0])] == [0, 4]
    assert store.counts(study.id) == {"QUEUED": 1, "RUNNING": 0, "COMPLETED": 2, "PRUNED": 0, "FAILED": 2}
    assert store.consecutive_failures(study.id) == 2 and store.consecutive_failures(study.id, up_to=1) == 1


def test_history_with_curves_reads_the_study_objective(store: Store) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({}, 2)])
    worker = store.register_worker("w", "h", 1, None)
    claimed = store.claim(worker)
    assert claimed is not None
    store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": 0.4, "loss": 1.0}, "val_accuracy", "max")
    store.record_epoch(claimed.trial_id, worker, 2, {"val_accuracy": 0.6}, "val_accuracy", "max")
    assert store.history(study.id, with_curves=True)[0].curve == {1: 0.4, 2: 0.6}
    assert store.history(study.id)[0].curve == {}


@pytest.mark.parametrize("direction, best_number", [("max", 2), ("min", 1)])
def test_the_best_trial_is_the_best_completed_objective_ties_to_the_lowest_number(
    store: Store, direction: str, best_number: int
) -> None:
    study = add_study(store)
    study = StudyRecord(**dataclasses.asdict(study) | {"direction": direction})
    assert store.best_trial(study) is None
    finished(store, study, [0.5, 0.1, 0.9, None, 0.9, 0.1])  # 3: no objective; 4 and 5 tie with 2 and 1
    finished(store, study, [5.0, -5.0], state="PRUNED")  # better objectives, but not COMPLETED
    best = store.best_trial(study)
    assert best is not None and best.number == best_number
    ranked = store.trials(study.id, sort="objective", direction=direction, limit=3)
    assert next(t.objective for t in ranked if t.state == "COMPLETED") == best.objective


def test_the_best_trial_is_one_query(store: Store) -> None:
    study = add_study(store)
    finished(store, study, [0.5, 0.7])
    statements: list[str] = []
    from sqlalchemy import event

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.best_trial(study)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert "LIMIT" in statements[-1].upper() and "ORDER BY" in statements[-1].upper()


def test_reads_of_trials_attempts_and_snapshots(store: Store) -> None:
    study = add_study(store)
    finished(store, study, [0.5, 0.7])
    trials = store.trials(study.id)
    assert [t.number for t in trials] == [0, 1] and store.trial_by_id(trials[1].id) == trials[1]
    with pytest.raises(UsageError, match="trial 7: no such trial"):
        store.trial(study.id, 7)
    snapshot = store.snapshot(study)
    assert snapshot.trials == trials and len(snapshot.attempts) == 2
    assert set(snapshot.workers) == {t.worker_id for t in trials}
    # The same view as plain rows of the columns asked for (what the report reads), with the best trial's id.
    rows = store.snapshot_rows(study, ("number", "objective", "worker_id"), ("trial_id", "outcome"))
    assert rows.trials == [(t.number, t.objective, t.worker_id) for t in trials]
    assert rows.attempts == [(a.trial_id, a.outcome) for a in snapshot.attempts]
    assert rows.curves == [] and rows.workers == snapshot.workers  # the objective is val_accuracy, never logged
    best = store.best_trial(study)
    assert best is not None and rows.best_id == best.id == trials[1].id
    store.add_trials(study, [NewTrial({"i": 2}, 2)])
    worker = store.register_worker("w-curves", "h", 1, None)
    claimed = store.claim(worker, study.id)
    assert claimed is not None
    for epoch, value in ((1, 0.9), (2, float("nan"))):
        assert store.record_epoch(claimed.trial_id, worker, epoch, {"val_accuracy": value}, "val_accuracy", "max")
    assert store.snapshot_rows(study, ("id",), ("id",)).curves == [(claimed.trial_id, 1, 0.9)]  # finite only


def test_a_final_job_lives_queued_running_completed(store: Store, tmp_path: Path) -> None:
    study = add_study(store)
    finished(store, study, [0.5])
    trial = store.trial(study.id, 0)
    new = NewFinalJob(study_id=study.id, trial_id=trial.id, params=trial.params, train_on="train", epochs=5, seed=1)
    job, created = store.create_final_job(new)
    assert created and (job.number, job.state, job.attempts) == (1, "QUEUED", 0)
    assert store.create_final_job(new) == (job, False)
    worker, other = store.register_worker("fw", "h", 1, None), store.register_worker("fx", "h", 2, None)
    claimed = store.claim_next(worker, study.id)
    assert claimed is not None and claimed.id == job.id and (claimed.state, claimed.attempts) == ("RUNNING", 1)
    assert store.claim_final_job(other) is None
    assert store.final_job_heartbeat(job.id, worker, 60) and not store.final_job_heartbeat(job.id, other, 60)
    assert store.record_final_epoch(job.id, worker, 1, {"loss": 0.5})
    assert store.record_final_epoch(job.id, worker, 1, {"loss": 9.0})  # idempotent
    assert not store.record_final_epoch(job.id, other, 2, {"loss": 0.1})
    exported = NewArtifact(study_id=study.id, kind="keras", uri=str(tmp_path / "m.keras"), sha256="0" * 64,
                           size_bytes=1)  # fmt: skip
    assert store.finish_final_job(
        job.id, worker, best_epoch=1, objective=float("nan"), test_metrics={"acc": 0.9}, confusion=None,
        class_rows=[{"class_label": "a", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}],
        slice_rows=[], artifacts=[exported],
    )  # fmt: skip
    done = store.final_job(job.id)
    assert (done.state, done.objective, done.test_metrics, done.epochs_done) == ("COMPLETED", None, {"acc": 0.9}, 1)
    assert [a.final_job_id for a in store.final_artifacts(job.id)] == [job.id]
    classes, slices = store.final_evaluation(job.id)
    assert [c.class_label for c in classes] == ["a"] and slices == []
    assert store.final_metrics(job.id) == {1: {"loss": 0.5}} and store.final_jobs(study.id) == [done]
    final_worker = store.final_job_worker(job.id)
    assert final_worker is not None and (final_worker.name, final_worker.state) == ("fw", "IDLE")
    assert store.requeue_final_job(job.id, "x") is None  # COMPLETED never moves


def test_a_final_job_fails_is_queued_again_and_fails_after_its_attempts(store: Store) -> None:
    study = add_study(store, lease_seconds=0.0)
    finished(store, study, [0.5])
    trial = store.trial(study.id, 0)
    new = NewFinalJob(study_id=study.id, trial_id=trial.id, params={}, train_on="train", epochs=5, seed=1)
    job, _ = store.create_final_job(new)
    worker = store.register_worker("fw", "h", 1, None)
    assert store.claim_final_job(worker, job_id=job.id) is not None
    store.fail_final_job(job.id, worker, "NaN loss")
    failed = store.final_job(job.id)
    assert (failed.state, failed.error) == ("FAILED", "NaN loss") and failed.finished_at is not None
    assert store.claim_final_job(worker) is None
    again, created = store.create_final_job(new)
    assert not created and (again.state, again.attempts, again.finished_at) == ("QUEUED", 0, None)
    for attempt in range(1, FINAL_JOB_MAX_ATTEMPTS + 1):
        assert store.claim_final_job(worker, study.id) is not None
        expected = "FAILED" if attempt == FINAL_JOB_MAX_ATTEMPTS else "QUEUED"
        if attempt == 1:
            assert store.requeue_final_job(job.id, "worker lost", worker) == expected
        else:
            assert store.expire_leases({study.id: 0}) == 1 and store.final_job(job.id).state == expected


def test_workers_register_live_and_stop(store: Store) -> None:
    worker = store.register_worker("w", "h", 1, "0")
    assert store.live_workers(60) == 1
    store.worker_alive(worker, "BUSY")
    store.worker_stopped(worker)
    assert store.live_workers(60) == 0


def test_every_record_handed_out_is_frozen(store: Store) -> None:
    study = add_study(store)
    finished(store, study, [0.5])
    trial = store.trial(study.id, 0)
    job, _ = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params={}, train_on="train", epochs=5, seed=1)
    )
    worker = store.register_worker("fw", "h", 1, None)
    store.claim_final_job(worker)
    attempt, history = store.attempts(trial.id)[0], store.history(study.id)[0]
    records = [study, trial, job, attempt, store.final_job_worker(job.id), history]
    store.record_checkpoint(NewArtifact(study_id=study.id, trial_id=trial.id, kind="checkpoint", uri="/c", sha256="a",
                                        size_bytes=1))  # fmt: skip
    records += [store.checkpoints(study.id)[0], store.snapshot(study)]
    for record in records:
        assert dataclasses.is_dataclass(record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.state = "COMPLETED"  # type: ignore[union-attr]


# --- retries ---------------------------------------------------------------------------------------------


def test_the_worker_and_coordinator_methods_retry_and_the_reads_do_not() -> None:
    retried = {name for name, f in inspect.getmembers(Store, inspect.isfunction) if getattr(f, "retried", False)}
    worker_and_coordinator = {
        "claim", "claim_next", "heartbeat", "record_epoch", "record_checkpoint", "finish", "release", "retry",
        "restart_from_scratch", "claim_final_job", "final_job_heartbeat", "record_final_epoch", "finish_final_job",
        "fail_final_job", "requeue_final_job", "register_worker", "worker_alive", "worker_stopped", "history",
        "counts", "consecutive_failures", "expire_leases", "hold_coordinator_lease", "add_trials", "close_queued",
        "request_stop", "studies", "study", "study_by_id", "study_state", "set_study_state", "live_workers",
    }  # fmt: skip
    assert worker_and_coordinator <= retried
    assert not retried & {"trials", "best_trial", "metrics", "final_evaluation", "snapshot", "session"}


class _Flaky(Database):
    def __init__(self, failures: int) -> None:
        super().__init__(engine=make_engine("sqlite://"), retry_seconds=60)  # never used: no statement runs
        self.failures, self.calls, self.inner_calls = failures, 0, 0

    @retrying
    def outer(self) -> str:
        self.calls += 1
        return self.inner()

    @retrying
    def inner(self) -> str:
        self.inner_calls += 1
        if self.inner_calls <= self.failures:
            error = StoreError("db", "cannot use the database: gone")
            error.__cause__ = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
            raise error
        return "ok"


def test_a_lost_connection_is_retried_by_the_outer_call_only(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(database_module.time, "sleep", sleeps.append)
    flaky = _Flaky(failures=3)
    assert flaky.outer() == "ok"
    assert (flaky.calls, flaky.inner_calls, sleeps) == (4, 4, [0.25, 0.5, 1.0])  # one loop, not one per level
    flaky = _Flaky(failures=1)
    flaky.retry_seconds = 0.0
    with pytest.raises(StoreError):
        flaky.outer()
