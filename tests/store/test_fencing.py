"""Fencing (issue 24): every write of a trial or a final job by a worker carries the attempt it claimed and is
refused once another attempt holds it, on SQLite and PostgreSQL. The lost lease is forced (the test moves the
lease into the past), never slept into."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import NewArtifact, NewFinalJob, NewStudy, Store, StudyRecord, TrialState
from hpsearch.store.models import FinalJob, Trial
from hpsearch.store.queue import CheckpointRecorded
from hpsearch.store.records import FinalJobRecord


def fenced_study(store: Store, root: Path) -> StudyRecord:
    """A study with one queued trial whose artifacts live under ``root``."""
    study, _ = store.create_study(
        NewStudy(
            name="fenced", objective_name="val_accuracy", direction="max", algorithm="random", max_trials=10,
            max_epochs=3, seed=0,
            spec={"search": {"max_retries": 5, "max_consecutive_failures": 3},
                  "run": {"lease_seconds": 60.0, "heartbeat_seconds": 1.0}},
            space={"space": [], "values": {}}, source_path=str(root / "s.toml"), base_dir=str(root),
            artifact_root=str(root),
        )
    )  # fmt: skip
    store.add_trials(study, [NewTrial({"u": 1}, 3)])
    return study


def checkpoint_file(study: StudyRecord, trial_id: int, name: str, epoch: int) -> NewArtifact:
    """Write a checkpoint file under the study's root and describe it as the worker reports it."""
    path = Path(study.artifact_root) / "fenced" / "trials" / "0" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"{name} weights".encode())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return NewArtifact(study_id=study.id, trial_id=trial_id, kind="checkpoint", epoch=epoch, uri=str(path),
                       sha256=digest, size_bytes=path.stat().st_size)  # fmt: skip


def lose_lease(store: Store, study: StudyRecord, trial_id: int) -> None:
    """The worker stalls past its lease: its lease is moved into the past and the coordinator requeues it."""
    with store.session() as session:
        session.execute(sa.update(Trial).where(Trial.id == trial_id).values(lease_expires_at=datetime(2000, 1, 1)))
    assert store.expire_leases({study.id: 5}) == 1
    assert store.trial_by_id(trial_id).state == TrialState.QUEUED


def test_a_stale_attempt_cannot_write_over_the_trial_the_next_attempt_completed(store: Store, tmp_path: Path) -> None:
    study = fenced_study(store, tmp_path)
    one, two = (store.register_worker(name, "h", pid, None) for pid, name in enumerate(("one", "two")))
    first = store.claim(one, study.id)
    assert first is not None and first.attempt == 1
    early = checkpoint_file(study, first.trial_id, "checkpoint-a1-0001.weights.h5", 1)
    assert store.record_checkpoint(early, one, attempt=first.attempt) == CheckpointRecorded(True, None)
    assert store.record_epoch(first.trial_id, one, 1, {"val_accuracy": 0.1}, "val_accuracy", "max", attempt=1)

    lose_lease(store, study, first.trial_id)  # worker one is paused (SIGSTOP, GC, network) past its lease
    second = store.claim(two, study.id)
    assert second is not None and second.attempt == 2
    assert (second.checkpoint_uri, second.initial_epoch) == (early.uri, 1)  # the takeover resumes from it
    final = checkpoint_file(study, second.trial_id, "checkpoint-a2-0003.weights.h5", 3)
    for epoch in (2, 3):
        assert store.record_epoch(second.trial_id, two, epoch, {"val_accuracy": 0.5}, "val_accuracy", "max",
                                  attempt=2)  # fmt: skip
    assert store.record_checkpoint(final, two, attempt=2) == CheckpointRecorded(True, early.uri)
    assert store.finish(second.trial_id, two, TrialState.COMPLETED, attempt=2)

    # Worker one wakes up: its child wrote a checkpoint of its own (under its own attempt's name).
    late = checkpoint_file(study, first.trial_id, "checkpoint-a1-0002.weights.h5", 2)
    assert store.heartbeat(first.trial_id, one, 60, attempt=1) == "lost"
    assert store.record_checkpoint(late, one, attempt=1) == CheckpointRecorded(accepted=False)
    assert not store.record_epoch(first.trial_id, one, 2, {"val_accuracy": 0.9}, "val_accuracy", "max", attempt=1)
    assert not store.finish(first.trial_id, one, TrialState.FAILED, "late", attempt=1)
    assert store.retry(first.trial_id, one, "late", attempt=1) is None

    trial = store.trial_by_id(first.trial_id)
    assert (trial.state, trial.objective, trial.epochs_done) == (TrialState.COMPLETED, 0.5, 3)
    [row] = store.checkpoints(study.id)
    assert (row.epoch, row.uri) == (3, final.uri)
    assert hashlib.sha256(Path(row.uri).read_bytes()).hexdigest() == row.sha256 == final.sha256
    assert store.metrics(first.trial_id)[2] == {"val_accuracy": 0.5}
    attempts = store.attempts(first.trial_id)
    assert [(a.attempt, a.outcome, a.last_checkpoint_epoch) for a in attempts] == [(1, "LOST", 1), (2, "COMPLETED", 3)]


def test_a_worker_that_claimed_its_own_trial_again_is_fenced_by_the_attempt(store: Store, tmp_path: Path) -> None:
    """The worker id alone cannot tell the attempts apart: the same worker lost the trial and claimed it again."""
    study = fenced_study(store, tmp_path)
    worker = store.register_worker("w", "h", 1, None)
    first = store.claim(worker, study.id)
    assert first is not None
    lose_lease(store, study, first.trial_id)
    again = store.claim(worker, study.id)
    assert again is not None and again.attempt == first.attempt + 1
    stale = checkpoint_file(study, first.trial_id, "checkpoint-a1-0001.weights.h5", 1)
    assert not store.record_checkpoint(stale, worker, attempt=first.attempt).accepted
    assert store.heartbeat(first.trial_id, worker, 60, attempt=first.attempt) == "lost"
    assert not store.record_epoch(first.trial_id, worker, 1, {"val_accuracy": 1.0}, "val_accuracy", "max",
                                  attempt=first.attempt)  # fmt: skip
    store.release(first.trial_id, worker, attempt=first.attempt)
    store.restart_from_scratch(first.trial_id, worker, "stale", attempt=first.attempt)
    assert not store.finish(first.trial_id, worker, TrialState.COMPLETED, attempt=first.attempt)
    trial = store.trial_by_id(first.trial_id)
    assert trial.state == TrialState.RUNNING and store.checkpoints(study.id) == []
    assert "stale" not in (trial.error or "") and store.metrics(first.trial_id) == {}
    assert store.heartbeat(again.trial_id, worker, 60, attempt=again.attempt) == "continue"
    assert store.finish(again.trial_id, worker, TrialState.COMPLETED, attempt=again.attempt)


# --- final jobs (promotions): the same fencing, by final_jobs.attempt ----------------------------------------


def queued_final_job(store: Store, study: StudyRecord) -> FinalJobRecord:
    """A promotion of the study's trial, queued."""
    trial = store.trials(study.id)[0]
    job, created = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params={"u": 1}, train_on="train", epochs=3, seed=0)
    )
    assert created
    return job


def lose_final_lease(store: Store, study: StudyRecord, job_id: int) -> None:
    """The promoting worker stalls past its lease: the lease is moved into the past and lapses."""
    with store.session() as session:
        session.execute(sa.update(FinalJob).where(FinalJob.id == job_id).values(lease_expires_at=datetime(2000, 1, 1)))
    assert store.expire_leases({study.id: 5}) == 1
    assert store.final_job(job_id).state == TrialState.QUEUED


def finish(store: Store, job_id: int, worker: int, card: NewArtifact, *, attempt: int, loss: float = 0.5) -> bool:
    """A final job's finish as its worker writes it, with a model card."""
    return store.finish_final_job(
        job_id, worker, best_epoch=3, objective=loss, test_metrics={"loss": loss}, confusion=None, class_rows=[],
        slice_rows=[], artifacts=[card], attempt=attempt,
    )  # fmt: skip


def test_a_stale_final_job_attempt_cannot_write_over_the_job_the_next_attempt_completed(
    store: Store, tmp_path: Path
) -> None:
    study = fenced_study(store, tmp_path)
    job = queued_final_job(store, study)
    one, two = (store.register_worker(name, "h", pid, None) for pid, name in enumerate(("one", "two")))
    first = store.claim_final_job(one, job_id=job.id)
    assert first is not None and first.attempt == 1 and first.checkpoint_attempt is None
    assert store.record_final_epoch(job.id, one, 1, {"loss": 0.9}, attempt=1)
    assert store.record_final_checkpoint(job.id, one, 1, attempt=1)

    lose_final_lease(store, study, job.id)  # worker one is frozen (SIGSTOP) past its lease
    second = store.claim_final_job(two, job_id=job.id)
    assert second is not None and second.attempt == 2
    assert (second.checkpoint_attempt, second.checkpoint_epoch) == (1, 1)  # it resumes from attempt 1's backup
    for epoch in (2, 3):
        assert store.record_final_epoch(job.id, two, epoch, {"loss": 0.5}, attempt=2)
    assert store.record_final_checkpoint(job.id, two, 3, attempt=2)
    card = NewArtifact(study_id=study.id, kind="model_card", uri=str(tmp_path / "a2" / "model_card.json"),
                       sha256="2" * 64, size_bytes=2)  # fmt: skip
    assert finish(store, job.id, two, card, attempt=2)

    # Worker one wakes up: every write of attempt 1 is refused and changes nothing.
    assert not store.final_job_heartbeat(job.id, one, 60, attempt=1)
    assert not store.record_final_epoch(job.id, one, 2, {"loss": 9.0}, attempt=1)
    assert not store.record_final_checkpoint(job.id, one, 2, attempt=1)
    late = NewArtifact(study_id=study.id, kind="model_card", uri=str(tmp_path / "a1" / "model_card.json"),
                       sha256="1" * 64, size_bytes=1)  # fmt: skip
    assert not finish(store, job.id, one, late, attempt=1, loss=9.0)
    assert not store.fail_final_job(job.id, one, "late", attempt=1)
    assert store.requeue_final_job(job.id, "late", one, attempt=1) is None

    done = store.final_job(job.id)
    assert (done.state, done.objective, done.epochs_done, done.attempt) == (TrialState.COMPLETED, 0.5, 3, 2)
    assert (done.checkpoint_attempt, done.checkpoint_epoch) == (2, 3) and "late" not in (done.error or "")
    assert store.final_metrics(job.id)[2] == {"loss": 0.5}
    assert [a.uri for a in store.final_artifacts(job.id)] == [card.uri]


def test_a_worker_that_claimed_its_final_job_again_is_fenced_by_the_attempt(store: Store, tmp_path: Path) -> None:
    """The worker id alone cannot tell the attempts apart: the same worker lost the job and claimed it again."""
    study = fenced_study(store, tmp_path)
    job = queued_final_job(store, study)
    worker = store.register_worker("w", "h", 1, None)
    first = store.claim_final_job(worker, job_id=job.id)
    assert first is not None
    lose_final_lease(store, study, job.id)
    again = store.claim_final_job(worker, job_id=job.id)
    assert again is not None and again.attempt == first.attempt + 1
    assert not store.final_job_heartbeat(job.id, worker, 60, attempt=first.attempt)
    assert not store.record_final_epoch(job.id, worker, 1, {"loss": 1.0}, attempt=first.attempt)
    assert not store.record_final_checkpoint(job.id, worker, 1, attempt=first.attempt)
    assert not store.fail_final_job(job.id, worker, "stale", attempt=first.attempt)
    assert store.requeue_final_job(job.id, "stale", worker, attempt=first.attempt) is None
    running = store.final_job(job.id)
    assert running.state == TrialState.RUNNING and running.checkpoint_attempt is None
    assert "stale" not in (running.error or "") and store.final_metrics(job.id) == {}
    assert store.final_job_heartbeat(job.id, worker, 60, attempt=again.attempt)
    assert store.fail_final_job(job.id, worker, "broken", attempt=again.attempt)

    # Promoting again queues the FAILED job with its crash count reset; the fencing token keeps counting.
    requeued, created = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=job.trial_id, params={"u": 1}, train_on="train", epochs=3, seed=0)
    )
    assert not created and requeued.attempts == 0
    third = store.claim_final_job(worker, job_id=job.id)
    assert third is not None and third.attempt == again.attempt + 1
    assert not store.final_job_heartbeat(job.id, worker, 60, attempt=again.attempt)
