"""A worker paused past its lease (issue 24): when it wakes after another worker took its trial (or final job)
over and completed it, its late checkpoint report is refused, it stops the trial and deletes no file, and the
COMPLETED trial's checkpoint row still names the new owner's file with its sha256. On SQLite and PostgreSQL;
the pause is forced (the lease is moved into the past), never slept into."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hpsearch.execution.final_run import FinalRun
from hpsearch.execution.finaljob import FinalTask, copy_resume_state
from hpsearch.execution.protocol import (
    BackupWritten,
    CheckpointWritten,
    ChildFailed,
    EpochEnded,
    ExportedFile,
    FinalResult,
)
from hpsearch.execution.supervisor import Ending
from hpsearch.execution.training import sha256_of
from hpsearch.execution.worker import Worker, _StudyCache, _TrialRun
from hpsearch.store import ClaimedTrial, Store, TrialState
from hpsearch.store.records import FinalJobRecord

from ..store.test_fencing import fenced_study, lose_final_lease, lose_lease, queued_final_job


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


def final_run(store: Store, worker_id: int, job: FinalJobRecord, cached: _StudyCache) -> FinalRun:
    """The worker's side of one final job, without a child process: the test plays the child."""
    worker = Worker(store)
    worker.id = worker_id
    settings = {"space": {"space": [], "values": {}}, "hypermodel": "m.py:build", "base_dir": "/x", "data_dir": "/x"}
    worker._child_settings = lambda cached: settings  # type: ignore[method-assign]
    return FinalRun(worker, job, cached)


def child_writes(task: FinalTask, epoch: int) -> None:
    """What a final job's child leaves in its output directory after ``epoch``: fit state, backup, best weights."""
    writes(Path(task.output_dir), task.attempt, epoch)


def writes(out: Path, attempt: int, epoch: int) -> None:
    (out / "backup").mkdir(parents=True, exist_ok=True)
    (out / "backup" / "latest.weights.h5").write_bytes(f"attempt {attempt} epoch {epoch}".encode() * 50)
    (out / "best.weights.h5").write_bytes(f"attempt {attempt} best".encode() * 50)
    (out / "fit_state.json").write_text(json.dumps({"epoch": epoch, "attempt": attempt}))


def exported(task: FinalTask) -> FinalResult:
    """The child's result: a model card in its output directory."""
    card = Path(task.output_dir) / "model_card.json"
    card.write_text(json.dumps({"attempt": task.attempt}))
    files = (ExportedFile("model_card", str(card), sha256_of(card), card.stat().st_size),)
    return FinalResult(best_epoch=3, objective=0.5, test_metrics={"loss": 0.5}, artifacts=files)


def test_a_frozen_promote_writes_only_its_own_attempts_files_and_every_report_is_refused(
    store: Store, tmp_path: Path
) -> None:
    """The final-job form of the issue's scenario: on the old code both attempts trained in final/<n>/ (the
    stale one overwrote the owner's backup, best weights and exports) and its backup was the one to resume."""
    study = fenced_study(store, tmp_path)
    job = queued_final_job(store, study)
    spec: Any = SimpleNamespace(
        run=SimpleNamespace(heartbeat_seconds=1.0, lease_seconds=60.0),
        study=SimpleNamespace(data="m.py:load"),
        promote=SimpleNamespace(thresholds=[0.5], slices=[], task="auto", formats=["keras"]),
    )
    cached = _StudyCache(store.study_by_id(study.id), spec, tmp_path / "data")
    one, two = (store.register_worker(name, "h", pid, None) for pid, name in enumerate(("one", "two")))
    first = store.claim_final_job(one, job_id=job.id)
    assert first is not None
    paused = final_run(store, one, first, cached)
    stale_task = paused.task()
    assert stale_task.resume_dir is None  # the first attempt starts from scratch
    child_writes(stale_task, 1)
    assert paused.receive(EpochEnded(1, {"loss": 0.9})) and paused.receive(BackupWritten(1))

    lose_final_lease(store, study, job.id)  # worker one is frozen (SIGSTOP) past its lease
    second = store.claim_final_job(two, job_id=job.id)
    assert second is not None
    owner = final_run(store, two, second, cached)
    task = owner.task()
    assert task.output_dir != stale_task.output_dir and task.resume_dir == stale_task.output_dir
    assert copy_resume_state(Path(task.resume_dir), Path(task.output_dir))  # resumes from attempt 1's backup
    assert json.loads((Path(task.output_dir) / "fit_state.json").read_text())["epoch"] == 1
    for epoch in (2, 3):
        assert owner.receive(EpochEnded(epoch, {"loss": 0.5}))
        child_writes(task, epoch)
        assert owner.receive(BackupWritten(epoch))
    owners_files = {p: sha256_of(p) for p in Path(task.output_dir).rglob("*") if p.is_file()}
    owner.conclude(Ending(result=exported(task)))
    assert store.final_job(job.id).state == TrialState.COMPLETED
    assert not Path(stale_task.output_dir).exists()  # the owner freed the attempt it resumed from

    # Worker one resumes (SIGCONT): its child trains epoch 2, writes its files and reports.
    child_writes(stale_task, 2)
    assert paused.receive(BackupWritten(2)) is False  # refused: the worker stops that child
    assert paused.receive(EpochEnded(2, {"loss": 9.0})) is False
    paused.conclude(Ending(result=exported(stale_task)))  # a late result is refused too
    paused.conclude(Ending(result=ChildFailed("late")))

    done = store.final_job(job.id)
    assert (done.state, done.objective, done.checkpoint_attempt, done.checkpoint_epoch) == ("COMPLETED", 0.5, 2, 3)
    assert store.final_metrics(job.id)[2] == {"loss": 0.5} and "late" not in (done.error or "")
    [card] = store.final_artifacts(job.id)
    assert Path(card.uri).parent == Path(task.output_dir) and sha256_of(Path(card.uri)) == card.sha256
    assert all(sha256_of(p) == digest for p, digest in owners_files.items())  # untouched by the stale attempt
    assert (Path(stale_task.output_dir) / "model_card.json").is_file()  # the stale attempt deleted nothing


def test_a_backup_that_changes_while_it_is_copied_is_not_resumed_from(tmp_path: Path, monkeypatch: Any) -> None:
    """A stale attempt still writing its directory: every copy is torn, so the job starts from scratch."""
    from hpsearch.execution import finaljob

    source, out = tmp_path / "a1", tmp_path / "a2"
    writes(source, 1, 1)
    copy, sizes = shutil.copy2, iter(range(100, 200))

    def copy_while_written(src: Any, dst: Any) -> Any:
        copied = copy(src, dst)
        (source / "fit_state.json").write_text("x" * next(sizes))  # the stale child wrote meanwhile
        return copied

    monkeypatch.setattr(finaljob.shutil, "copy2", copy_while_written)
    monkeypatch.setattr(finaljob.time, "sleep", lambda seconds: None)
    assert not copy_resume_state(source, out)
    assert list(out.iterdir()) == []  # nothing half-copied is left to resume from
    monkeypatch.setattr(finaljob.shutil, "copy2", copy)
    assert copy_resume_state(source, out) and (out / "backup" / "latest.weights.h5").is_file()
