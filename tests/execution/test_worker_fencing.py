"""A worker paused past its lease (issue 24): when it wakes after another worker took its trial over and
completed it, its late checkpoint report is refused, it stops the trial and deletes no file, and the
COMPLETED trial's checkpoint row still names the new owner's file with its sha256. On SQLite and PostgreSQL;
the pause is forced (the lease is moved into the past), never slept into."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hpsearch.execution.protocol import CheckpointWritten, EpochEnded
from hpsearch.execution.training import sha256_of
from hpsearch.execution.worker import Worker, _StudyCache, _TrialRun
from hpsearch.store import ClaimedTrial, Store, TrialState

from ..store.test_fencing import fenced_study, lose_lease


def trial_run(store: Store, worker_id: int, claimed: ClaimedTrial, cached: _StudyCache) -> _TrialRun:
    """The worker's side of one trial, without a child process: the test hands it the child's messages."""
    worker = Worker(store)
    worker.id = worker_id
    return _TrialRun(worker, claimed, cached, None, 0.0)


def written(directory: Path, name: str, epoch: int) -> CheckpointWritten:
    """A checkpoint file as a trial's child writes it, and its message."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode() * 100)
    return CheckpointWritten(epoch, str(path), sha256_of(path), path.stat().st_size)


def test_a_paused_workers_late_checkpoint_is_refused_and_deletes_nothing(store: Store, tmp_path: Path) -> None:
    study = fenced_study(store, tmp_path)
    spec: Any = SimpleNamespace(
        run=SimpleNamespace(heartbeat_seconds=1.0, lease_seconds=60.0), search=SimpleNamespace(trial_timeout=None)
    )
    cached = _StudyCache(store.study_by_id(study.id), spec, tmp_path / "data")
    trial_dir = tmp_path / "fenced" / "trials" / "0"
    one, two = (store.register_worker(name, "h", pid, None) for pid, name in enumerate(("one", "two")))
    first = store.claim(one, study.id)
    assert first is not None
    paused = trial_run(store, one, first, cached)
    assert paused.receive(EpochEnded(1, {"val_accuracy": 0.1}))
    assert paused.receive(written(trial_dir, "checkpoint-a1-0001.weights.h5", 1))

    lose_lease(store, study, first.trial_id)  # worker one is frozen (SIGSTOP) past its lease
    second = store.claim(two, study.id)
    assert second is not None and second.initial_epoch == 1  # resumes from worker one's checkpoint
    owner = trial_run(store, two, second, cached)
    for epoch in (2, 3):
        assert owner.receive(EpochEnded(epoch, {"val_accuracy": 0.5}))
    final = written(trial_dir, "checkpoint-a2-0003.weights.h5", 3)
    assert owner.receive(final)
    assert not (trial_dir / "checkpoint-a1-0001.weights.h5").exists()  # the owner freed the file it replaced
    assert store.finish(second.trial_id, two, TrialState.COMPLETED)

    # Worker one resumes (SIGCONT): its child had written epoch 2 meanwhile and it reports it.
    late = written(trial_dir, "checkpoint-a1-0002.weights.h5", 2)
    assert paused.receive(late) is False  # refused: the worker stops that trial
    assert paused.receive(EpochEnded(2, {"val_accuracy": 0.9})) is False

    trial = store.trial_by_id(first.trial_id)
    assert trial.state == TrialState.COMPLETED and trial.objective == 0.5
    [row] = store.checkpoints(study.id)
    assert (row.epoch, row.uri) == (3, final.uri)
    assert Path(row.uri).is_file() and sha256_of(Path(row.uri)) == row.sha256 == final.sha256
    assert Path(late.uri).is_file()  # the stale attempt's own file is left for gc, not half-recorded
