from __future__ import annotations

import dataclasses
import multiprocessing
from collections import Counter

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hpsearch.errors import StoreError, UsageError
from hpsearch.store import (
    FinalJobRecord,
    NewArtifact,
    NewFinalJob,
    NewStudy,
    Store,
    StudyRecord,
    StudyState,
    TrialState,
    open_store,
)
from hpsearch.store.db import make_engine
from hpsearch.store.models import Base, TrialMetric, TrialParam, Worker
from hpsearch.strategies import NewTrial

from ..conftest import add_study


def test_migrations_create_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_same_study_twice_is_returned_and_a_changed_one_refused(store: Store) -> None:
    first = add_study(store)
    same = {f.name: getattr(first, f.name) for f in dataclasses.fields(NewStudy)}
    again, created = store.create_study(NewStudy(**same))
    assert (again.id, created) == (first.id, False)
    changed = NewStudy(**same | {"spec": {**first.spec, "x": 1}})
    with pytest.raises(UsageError, match="different study file"):
        store.create_study(changed)


def test_trials_are_numbered_and_params_typed(store: Store) -> None:
    study = add_study(store)
    numbers = store.add_trials(study, [NewTrial({"u": 3, "lr": 0.5, "act": "relu", "bn": True}, 3)] * 2)
    assert numbers == [0, 1]
    assert store.add_trials(study, [NewTrial({"u": 1}, 3)]) == [2]
    with store.session() as session:
        rows = {r.name: r for r in session.scalars(sa.select(TrialParam).where(TrialParam.trial_id == 1))}
    assert (rows["u"].value_type, rows["u"].value_int, rows["u"].value_float) == ("int", 3, 3.0)
    assert (rows["lr"].value_type, rows["lr"].value_float) == ("float", 0.5)
    assert (rows["act"].value_type, rows["act"].value_text) == ("str", "relu")
    assert (rows["bn"].value_type, rows["bn"].value_bool) == ("bool", True)


def test_epochs_are_idempotent_and_track_the_best_objective(store: Store) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({}, 3)])
    worker = store.register_worker("w1", "host", 1, None)
    claimed = store.claim(worker)
    assert claimed is not None and claimed.number == 0 and claimed.initial_epoch == 0
    assert store.record_epoch(claimed.trial_id, worker, 1, {"loss": 1.0, "val_accuracy": 0.5}, "val_accuracy", "max")
    assert store.record_epoch(claimed.trial_id, worker, 2, {"loss": 0.5, "val_accuracy": 0.8}, "val_accuracy", "max")
    # A retried report (the database answered but the worker did not hear it) changes nothing.
    assert store.record_epoch(claimed.trial_id, worker, 2, {"loss": 9.0, "val_accuracy": 0.1}, "val_accuracy", "max")
    assert store.record_epoch(claimed.trial_id, worker, 3, {"loss": 0.4, "val_accuracy": 0.7}, "val_accuracy", "max")
    assert store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.objective, trial.best_epoch, trial.epochs_done) == ("COMPLETED", 0.8, 2, 3)
    assert store.metrics(trial.id)[2] == {"loss": 0.5, "val_accuracy": 0.8}
    with store.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(TrialMetric)) == 6


def test_heartbeat_renews_obeys_stop_and_detects_a_lost_lease(store: Store) -> None:
    study = add_study(store, lease_seconds=0.0)
    store.add_trials(study, [NewTrial({}, 3)])
    one, two = store.register_worker("w1", "h", 1, None), store.register_worker("w2", "h", 2, None)
    claimed = store.claim(one)
    assert claimed is not None
    assert store.expire_leases({study.id: 1}) == 1  # the zero-second lease lapsed: back to the queue
    assert store.trial(study.id, 0).state == TrialState.QUEUED
    taken = store.claim(two)
    assert taken is not None and taken.trial_id == claimed.trial_id
    assert store.heartbeat(claimed.trial_id, one, 60) == "lost"
    assert not store.record_epoch(claimed.trial_id, one, 1, {"val_accuracy": 1.0}, "val_accuracy", "max")
    assert store.heartbeat(taken.trial_id, two, 60) == "continue"
    store.request_stop(study.id, [0])
    assert store.heartbeat(taken.trial_id, two, 60) == "stop"


def test_lease_expiry_fails_a_trial_past_max_retries(store: Store) -> None:
    study = add_study(store, max_retries=0, lease_seconds=0.0)
    store.add_trials(study, [NewTrial({}, 3)])
    store.claim(store.register_worker("w1", "h", 1, None))
    assert store.expire_leases({study.id: 0}) == 1
    trial = store.trial(study.id, 0)
    assert trial.state == TrialState.FAILED
    assert "lease expired" in (trial.error or "")


def test_stopped_studies_hand_out_no_trials(store: Store) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({}, 3)])
    store.set_study_state(study.id, StudyState.STOPPED)
    assert store.claim(store.register_worker("w1", "h", 1, None)) is None


def test_a_reclaimed_trial_resumes_from_its_checkpoint_as_a_new_attempt(store: Store) -> None:
    study = add_study(store, lease_seconds=0.0)
    store.add_trials(study, [NewTrial({"u": 1}, 5)])
    one, two = store.register_worker("w1", "h", 1, None), store.register_worker("w2", "h", 2, None)
    first = store.claim(one)
    assert first is not None and first.initial_epoch == 0 and first.checkpoint_uri is None
    store.record_checkpoint(
        NewArtifact(study_id=study.id, trial_id=first.trial_id, kind="checkpoint", epoch=2, uri="/c/2", sha256="a",
                 size_bytes=1)
    )  # fmt: skip
    assert store.expire_leases({study.id: 1}) == 1
    second = store.claim(two)
    assert second is not None and second.trial_id == first.trial_id
    assert (second.initial_epoch, second.checkpoint_uri, second.checkpoint_sha256) == (2, "/c/2", "a")
    attempts = store.attempts(first.trial_id)
    assert [(a.attempt, a.worker_id, a.start_epoch, a.outcome) for a in attempts] == [
        (1, one, 0, "LOST"),
        (2, two, 2, None),
    ]
    assert store.finish(second.trial_id, two, TrialState.COMPLETED, extra_params={"u": 9, "batch": 32})
    trial = store.trial(study.id, 0)
    assert trial.params == {"u": 1, "batch": 32}  # a parameter first declared in fit joins; known ones stay
    assert trial.duration_seconds is not None and trial.duration_seconds >= 0
    assert [a.outcome for a in store.attempts(trial.id)] == ["LOST", "COMPLETED"]
    with store.session() as session:
        rows = {r.name: r for r in session.scalars(sa.select(TrialParam).where(TrialParam.trial_id == trial.id))}
    assert (rows["batch"].value_type, rows["batch"].value_int) == ("int", 32)
    assert rows["u"].value_int == 1


def test_finish_keeps_earlier_errors_times_the_trial_and_frees_the_worker(store: Store) -> None:
    study = add_study(store, lease_seconds=0.0)
    store.add_trials(study, [NewTrial({}, 3), NewTrial({}, 3)])
    one, two = store.register_worker("w1", "h", 1, None), store.register_worker("w2", "h", 2, None)
    first = store.claim(one)
    assert first is not None and store.expire_leases({study.id: 1}) == 1
    again = store.claim(two)
    assert again is not None and again.trial_id == first.trial_id
    assert not store.finish(first.trial_id, one, TrialState.COMPLETED, "late")  # the lost worker changes nothing
    assert store.finish(again.trial_id, two, TrialState.FAILED, "ValueError: boom")
    trial = store.trial(study.id, 0)
    assert trial.state == TrialState.FAILED and trial.worker_id == two and trial.lease_expires_at is None
    lost, boom = (trial.error or "").split("\n")
    assert lost.startswith("lease expired") and boom == "ValueError: boom"
    assert trial.started_at is not None and trial.finished_at is not None and trial.duration_seconds is not None
    elapsed = (trial.finished_at - trial.started_at).total_seconds()
    assert trial.duration_seconds == pytest.approx(elapsed, abs=2e-3)  # computed in SQL: SQLite keeps milliseconds
    assert [a.outcome for a in store.attempts(trial.id)] == ["LOST", "FAILED"]
    # A finish without an error keeps the one already there; no error at all stays None.
    second = store.claim(two)
    assert second is not None and store.finish(second.trial_id, two, TrialState.COMPLETED)
    assert store.trial(study.id, 1).error is None
    with store.session() as session:
        assert session.get_one(Worker, two).state == "IDLE"


def test_a_promotion_whose_parent_lost_its_checkpoint_starts_over_with_a_note(store: Store) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({"u": 1}, 3)])
    worker = store.register_worker("w1", "h", 1, None)
    parent = store.claim(worker)
    assert parent is not None and store.finish(parent.trial_id, worker, TrialState.COMPLETED)
    store.add_trials(study, [NewTrial({"u": 1}, 9, initial_epoch=3, parent_number=0)])
    child = store.claim(worker)
    assert child is not None and child.number == 1 and child.initial_epoch == 0 and child.checkpoint_uri is None
    assert "parent's checkpoint is gone" in (store.trial(study.id, 1).error or "")


def _study_with_a_final_job(store: Store) -> tuple[StudyRecord, FinalJobRecord]:
    """A study with one queued trial and a queued promotion of it."""
    study = add_study(store)
    store.add_trials(study, [NewTrial({"u": 1}, 3)])
    trial = store.trial(study.id, 0)
    job, _ = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params=trial.params, train_on="train", epochs=5, seed=1)
    )
    return study, job


def test_a_final_job_is_claimed_once_with_a_lease(store: Store) -> None:
    study, job = _study_with_a_final_job(store)
    one, two = store.register_worker("w1", "h", 1, None), store.register_worker("w2", "h", 2, None)
    claimed = store.claim_final_job(one, study.id)
    assert claimed is not None and claimed.id == job.id and claimed.attempts == 1
    assert store.claim_final_job(two, study.id) is None
    stored = store.final_job(job.id)
    assert (stored.state, stored.worker_id, stored.attempts) == ("RUNNING", one, 1)
    assert stored.lease_expires_at is not None and stored.started_at is not None
    assert store.final_job_worker(job.id) is not None and store.final_job_worker(job.id).state == "BUSY"  # type: ignore[union-attr]


def test_a_worker_is_handed_trials_first_then_promotions(store: Store) -> None:
    study, job = _study_with_a_final_job(store)
    worker = store.register_worker("w1", "h", 1, None)
    first = store.claim_next(worker, study.id)
    assert not isinstance(first, FinalJobRecord) and first is not None and first.number == 0
    second = store.claim_next(worker, study.id)
    assert isinstance(second, FinalJobRecord) and second.id == job.id and second.state == "RUNNING"
    assert store.claim_next(worker, study.id) is None


def _claim_all(url: str, index: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = Store(make_engine(url))
    worker = store.register_worker(f"claimer-{index}", "h", index, None)
    claimed = []
    while (trial := store.claim(worker)) is not None:
        claimed.append(trial.number)
    queue.put(claimed)


@pytest.mark.slow  # many claiming processes: among the suite's longest
def test_concurrent_claimers_take_every_trial_exactly_once(store: Store, db_url: str) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({"i": i}, 1) for i in range(500)])
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    claimers = [context.Process(target=_claim_all, args=(db_url, i, queue)) for i in range(8)]
    for process in claimers:
        process.start()
    results = [queue.get(timeout=300) for _ in claimers]
    for process in claimers:
        process.join(timeout=60)
    counts = Counter(number for claimed in results for number in claimed)
    assert sorted(counts) == list(range(500))
    assert set(counts.values()) == {1}
    assert sum(bool(claimed) for claimed in results) >= 2  # the claims really were concurrent
    assert store.counts(study.id)["RUNNING"] == 500


def test_schema_missing_newer_or_unreachable_gives_one_clear_error(db_url: str) -> None:
    with pytest.raises(UsageError, match=r"no hpsearch tables|no such database file"):
        open_store(db_url)
    store = open_store(db_url, create=True)
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer than this hpsearch"):
        open_store(db_url)
    with pytest.raises(StoreError, match="newer than this hpsearch"):
        open_store(db_url, create=True)
    store.engine.dispose()


def test_unreachable_server_error_hides_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql+psycopg://analyst:s3cret-pw@127.0.0.1:1/nope")
    assert "s3cret-pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_short_password_is_masked_without_garbling_the_message() -> None:
    from hpsearch.store.db import scrub

    url = "postgresql+psycopg://me:p@127.0.0.1:1/x"
    assert scrub('connection to "127.0.0.1", port 1 failed: password=p', url) == (
        'connection to "127.0.0.1", port 1 failed: password=***'
    )
