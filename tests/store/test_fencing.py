"""Fencing (issue 24): every write of a trial by a worker carries the attempt it claimed and is refused once
another attempt holds the trial, on SQLite and PostgreSQL. The lost lease is forced (the test moves the
lease into the past), never slept into."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import NewArtifact, NewStudy, Store, StudyRecord, TrialState
from hpsearch.store.models import Trial
from hpsearch.store.queue import CheckpointRecorded


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
