"""Storage conformance, part 1 (like Optuna's StorageTestCase): the trial state machine, the queue and leases,
through the public Store methods, on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import TRANSITIONS, ClaimedTrial, NewArtifact, Store, StudyRecord, StudyState, TrialState
from hpsearch.store.models import Trial
from hpsearch.store.queue import CheckpointRecorded
from hpsearch.store.states import FINAL_JOB_TRANSITIONS, TransitionError, allowed, check_transition

from ..conftest import add_study

FINISHED = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)


def running(store: Store, study: StudyRecord, worker: str = "w1") -> tuple[int, ClaimedTrial]:
    """A new trial of ``study``, claimed by a new worker."""
    store.add_trials(study, [NewTrial({"u": 1}, 3)])
    worker_id = store.register_worker(worker, "h", 1, None)
    claimed = store.claim(worker_id, study.id)
    assert claimed is not None
    return worker_id, claimed


def state(store: Store, study: StudyRecord, number: int) -> str:
    return store.trial(study.id, number).state


# --- the table itself -----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", [TRANSITIONS, FINAL_JOB_TRANSITIONS])
def test_the_tables_name_every_state_and_finished_trials_never_move(table: dict) -> None:  # type: ignore[type-arg]
    assert set(table) == set(TrialState)
    assert table[TrialState.COMPLETED] == frozenset() and table[TrialState.PRUNED] == frozenset()
    for old, new in itertools.product(TrialState, TrialState):
        if new in table[old]:
            check_transition(old, new, table)
        else:
            with pytest.raises(TransitionError, match=f"{old} -> {new}"):
                check_transition(old, new, table)
    assert not allowed(TrialState.FAILED, TrialState.QUEUED) and allowed(
        TrialState.FAILED, TrialState.QUEUED, FINAL_JOB_TRANSITIONS
    )


# --- every allowed transition, through the store ---------------------------------------------------------


def test_queued_to_running_by_claim_and_queued_to_pruned_by_close(store: Store) -> None:
    study = add_study(store)
    _worker, claimed = running(store, study)
    store.add_trials(study, [NewTrial({"u": 2}, 3)])
    assert state(store, study, claimed.number) == TrialState.RUNNING
    assert store.close_queued(study.id, "budget spent") == 1  # the RUNNING one is left alone
    closed = store.trial(study.id, 1)
    assert (closed.state, closed.error) == (TrialState.PRUNED, "budget spent") and closed.finished_at is not None
    assert state(store, study, 0) == TrialState.RUNNING


@pytest.mark.parametrize("outcome", FINISHED)
def test_running_to_each_finished_state_by_finish(store: Store, outcome: TrialState) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    assert store.finish(claimed.trial_id, worker, outcome, "why")
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.error, trial.lease_expires_at) == (outcome, "why", None)
    assert trial.duration_seconds is not None and trial.duration_seconds >= 0
    assert [a.outcome for a in store.attempts(trial.id)] == [outcome]


def test_running_to_queued_by_release_and_by_retry_then_failed_past_max_retries(store: Store) -> None:
    study = add_study(store, max_retries=1)
    worker, claimed = running(store, study)
    store.release(claimed.trial_id, worker)
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.worker_id, trial.retries) == (TrialState.QUEUED, None, 0)
    again = store.claim(worker)
    assert again is not None and store.retry(again.trial_id, worker, "crashed") == TrialState.QUEUED
    third = store.claim(worker)
    assert third is not None and store.retry(third.trial_id, worker, "crashed again") == TrialState.FAILED
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.retries, trial.error) == (TrialState.FAILED, 2, "crashed\ncrashed again")
    assert trial.finished_at is not None
    assert [a.outcome for a in store.attempts(trial.id)] == ["RELEASED", "LOST", "LOST"]


# --- every refused transition changes nothing ------------------------------------------------------------


@pytest.mark.parametrize("bad", [TrialState.QUEUED, TrialState.RUNNING])
def test_finish_refuses_a_state_that_is_not_an_outcome(store: Store, bad: TrialState) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    with pytest.raises(TransitionError):
        store.finish(claimed.trial_id, worker, bad)
    assert state(store, study, 0) == TrialState.RUNNING


@pytest.mark.parametrize("finished", FINISHED)
def test_a_finished_trial_never_moves_again(store: Store, finished: TrialState) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    assert store.finish(claimed.trial_id, worker, finished)
    before = store.trial(study.id, 0)
    for outcome in FINISHED:
        assert not store.finish(claimed.trial_id, worker, outcome)  # -> another final state
    store.release(claimed.trial_id, worker)  # -> QUEUED
    assert store.retry(claimed.trial_id, worker, "x") is None  # -> QUEUED / FAILED
    assert store.close_queued(study.id, "x") == 0  # -> PRUNED
    assert store.claim(worker) is None  # -> RUNNING
    assert store.expire_leases({study.id: 5}) == 0
    assert store.heartbeat(claimed.trial_id, worker, 60) == "lost"
    assert store.trial(study.id, 0) == before


def test_a_queued_trial_cannot_be_finished_released_or_retried(store: Store) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({}, 1)])
    worker = store.register_worker("w", "h", 1, None)
    trial = store.trial(study.id, 0)
    assert not store.finish(trial.id, worker, TrialState.COMPLETED)
    store.release(trial.id, worker)
    assert store.retry(trial.id, worker, "x") is None
    assert store.trial(study.id, 0) == trial


def test_another_workers_trial_is_not_touched(store: Store) -> None:
    study = add_study(store)
    owner, claimed = running(store, study)
    intruder = store.register_worker("w2", "h", 2, None)
    assert not store.finish(claimed.trial_id, intruder, TrialState.COMPLETED)
    assert not store.record_epoch(claimed.trial_id, intruder, 1, {"val_accuracy": 1.0}, "val_accuracy", "max")
    assert store.heartbeat(claimed.trial_id, intruder, 60) == "lost"
    assert store.retry(claimed.trial_id, intruder, "x") is None
    assert state(store, study, 0) == TrialState.RUNNING and store.trial(study.id, 0).worker_id == owner


# --- claim ordering, leases, heartbeats, epochs ----------------------------------------------------------


def test_claims_take_the_oldest_queued_trial_of_running_studies(store: Store) -> None:
    first, second = add_study(store, "first"), add_study(store, "second")
    store.add_trials(second, [NewTrial({"i": 0}, 1)])
    store.add_trials(first, [NewTrial({"i": 1}, 1), NewTrial({"i": 2}, 1)])
    worker = store.register_worker("w", "h", 1, None)
    order = [store.claim(worker, first.id), store.claim(worker)]
    assert [(c.study_name, c.params) for c in order if c] == [("first", {"i": 1}), ("second", {"i": 0})]
    store.set_study_state(first.id, StudyState.STOPPED)
    assert store.claim(worker) is None  # first's last trial waits for its study to run again
    store.set_study_state(first.id, StudyState.RUNNING)
    claimed = store.claim(worker)
    assert claimed is not None and claimed.params == {"i": 2} and claimed.seed == first.seed + 1


def test_lapsed_leases_are_retried_then_failed_and_counted(store: Store) -> None:
    study = add_study(store, max_retries=1, lease_seconds=0.0)
    worker, _claimed = running(store, study)
    assert store.expire_leases({study.id: 1}) == 1
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.retries, trial.worker_id) == (TrialState.QUEUED, 1, None)
    assert "lease expired" in (trial.error or "")
    assert store.claim(worker) is not None
    assert store.expire_leases({study.id: 1}) == 1
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.retries) == (TrialState.FAILED, 2) and trial.finished_at is not None
    assert [a.outcome for a in store.attempts(trial.id)] == ["LOST", "LOST"]
    assert store.consecutive_failures(study.id) == 1


def test_heartbeat_answers_continue_stop_pause_and_lost(store: Store) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    assert store.heartbeat(claimed.trial_id, worker, 60) == "continue"
    store.request_stop(study.id, [claimed.number])
    assert store.heartbeat(claimed.trial_id, worker, 60) == "stop"
    with store.session() as session:
        session.execute(sa.update(Trial).values(stop_requested=False))
    store.set_study_state(study.id, StudyState.STOPPED)
    assert store.heartbeat(claimed.trial_id, worker, 60) == "pause"
    store.release(claimed.trial_id, worker)
    assert store.heartbeat(claimed.trial_id, worker, 60) == "lost"


@pytest.mark.parametrize(
    "direction, values, best", [("max", [0.5, 0.9, 0.7], (0.9, 2)), ("min", [0.5, 0.9, 0.2], (0.2, 3))]
)
def test_epoch_reports_are_idempotent_and_keep_the_best(
    store: Store, direction: str, values: list[float], best: tuple[float, int]
) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    for epoch, value in enumerate(values, 1):
        assert store.record_epoch(claimed.trial_id, worker, epoch, {"m": value, "loss": 1.0}, "m", direction)
    # The same epoch again (a retried report) changes nothing: its metric rows are kept as first written.
    assert store.record_epoch(claimed.trial_id, worker, 2, {"m": values[1], "loss": 9.0}, "m", direction)
    assert store.record_epoch(claimed.trial_id, worker, 4, {"m": float("nan")}, "m", direction)
    trial = store.trial(study.id, 0)
    assert (trial.objective, trial.best_epoch, trial.epochs_done) == (*best, 4)
    curve = store.metrics(trial.id)
    assert curve[2] == {"m": values[1], "loss": 1.0} and curve[4] == {"m": None}


def test_checkpoints_keep_the_latest_row_and_resume_a_new_attempt(store: Store) -> None:
    study = add_study(store, lease_seconds=0.0)
    worker, claimed = running(store, study)
    checkpoint = NewArtifact(study_id=study.id, trial_id=claimed.trial_id, kind="checkpoint", epoch=1, uri="/c/1",
                             sha256="a", size_bytes=1)  # fmt: skip
    assert store.record_checkpoint(checkpoint, worker, attempt=claimed.attempt) == CheckpointRecorded(True, None)
    later = NewArtifact(study_id=study.id, trial_id=claimed.trial_id, kind="checkpoint", epoch=2, uri="/c/2",
                        sha256="b", size_bytes=2)  # fmt: skip
    assert store.record_checkpoint(later, worker, attempt=claimed.attempt) == CheckpointRecorded(True, "/c/1")
    [row] = store.checkpoints(study.id)
    assert (row.epoch, row.uri, row.sha256) == (2, "/c/2", "b")
    store.expire_leases({study.id: 3})
    resumed = store.claim(worker)
    assert resumed is not None and (resumed.initial_epoch, resumed.checkpoint_uri) == (2, "/c/2")
    assert [(a.attempt, a.start_epoch, a.last_checkpoint_epoch) for a in store.attempts(claimed.trial_id)] == [
        (1, 0, 2),
        (2, 2, None),
    ]
    store.restart_from_scratch(resumed.trial_id, worker, "bad checkpoint")
    trial = store.trial(study.id, 0)
    assert (trial.state, trial.epochs_done, trial.objective) == (TrialState.RUNNING, 0, None)
    assert "bad checkpoint" in (trial.error or "")
    store.delete_artifacts([row.id])
    assert store.checkpoints(study.id) == []


def test_finish_adds_parameters_declared_while_training(store: Store) -> None:
    study = add_study(store)
    worker, claimed = running(store, study)
    assert store.finish(claimed.trial_id, worker, TrialState.COMPLETED, extra_params={"u": 9, "late": 0.5})
    assert store.trial(study.id, 0).params == {"u": 1, "late": 0.5}
