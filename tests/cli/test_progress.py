"""The live display of `hpsearch run` / `hpsearch coordinator`: per-trial rows (epoch, the objective's last
value, ETA, worker) and the failure reasons; the same facts as log lines when stdout is no terminal."""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta

import pytest
from rich.console import Console, Group

from hpsearch.cli.progress import Progress, eta_seconds, format_seconds
from hpsearch.records import NewTrial
from hpsearch.store import Store, TrialState

from ..conftest import add_study


def test_eta_and_durations() -> None:
    start = datetime(2026, 1, 1)
    assert eta_seconds(start, 2, 10, start + timedelta(seconds=20)) == 80.0
    assert eta_seconds(start, 0, 10, start + timedelta(seconds=20)) is None  # no pace before the first epoch
    assert eta_seconds(None, 2, 10, start) is None
    assert eta_seconds(start, 10, 10, start + timedelta(seconds=5)) == 0.0
    assert [format_seconds(s) for s in (None, 42, 185, 3720)] == ["-", "42s", "3m05s", "1h02m"]


def _running_study(store: Store):  # type: ignore[no-untyped-def]
    """Trial 0 RUNNING on worker node-1-7 after its first epoch; trial 1 FAILED."""
    study = add_study(store, "demo")
    store.add_trials(study, [NewTrial({"x": 0.5}, budget_epochs=4), NewTrial({"x": 0.1}, budget_epochs=4)])
    worker = store.register_worker("node-1-7", "node-1", 7, None)
    running = store.claim(worker, study.id)
    assert running is not None
    store.record_epoch(running.trial_id, worker, 1, {"val_accuracy": 0.625, "loss": 0.7}, "val_accuracy", "max")
    other = store.register_worker("node-1-8", "node-1", 8, None)
    failing = store.claim(other, study.id)
    assert failing is not None
    store.finish(failing.trial_id, other, TrialState.FAILED, "ValueError: bad layer\nTraceback ...")
    return store.study("demo")


def test_log_mode_prints_each_epoch_and_failure_once(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    study = _running_study(store)
    progress = Progress(store, lambda: [study], time.monotonic())
    progress()
    first = capsys.readouterr().out.splitlines()
    assert any(line.endswith("demo: 1/1000 done (1 failed), 1 running, 0 queued, best -") for line in first)
    epoch = [line for line in first if "trial 0 epoch" in line]
    assert len(epoch) == 1 and "trial 0 epoch 1/4 val_accuracy=0.6250 ETA " in epoch[0]
    assert epoch[0].endswith(" on node-1-7")
    assert any(line.endswith("demo: trial 1 failed: ValueError: bad layer") for line in first)
    progress()  # nothing changed: nothing printed again
    assert capsys.readouterr().out == ""


def test_terminal_view_has_a_row_per_running_trial_and_the_failures(store: Store) -> None:
    study = _running_study(store)
    progress = Progress(store, lambda: [study], time.monotonic())
    screen = Console(file=io.StringIO(), width=200)
    screen.print(Group(*progress._view(study, "summary")))
    text = screen.file.getvalue()  # type: ignore[attr-defined]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "demo summary" in lines
    assert "trial epoch last ETA worker" in lines
    row = next(line for line in lines if line.startswith("0 1/4 "))
    assert row.startswith("0 1/4 val_accuracy=0.6250 ") and row.endswith(" node-1-7")
    assert "trial 1 failed: ValueError: bad layer" in lines


def test_promote_local_prints_one_line_per_epoch(store: Store) -> None:
    from hpsearch.cli.progress import FinalJobProgress
    from hpsearch.store import NewFinalJob

    study = _running_study(store)
    trial = store.trial(study.id, 0)
    job, _ = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params=trial.params, train_on="train", epochs=5, seed=0)
    )
    worker = store.register_worker("node-2-9", "node-2", 9, None)
    assert store.claim_final_job(worker, job_id=job.id) is not None
    progress = FinalJobProgress(store, job.id, "val_accuracy")
    assert progress.lines() == []
    store.record_final_epoch(job.id, worker, 1, {"loss": 0.5, "val_accuracy": 0.7, "val_loss": 0.6})
    store.record_final_epoch(job.id, worker, 2, {"loss": 0.4, "val_accuracy": 0.8, "val_loss": 0.55})
    first, second = progress.lines()
    assert first.startswith(
        f"final job {job.number}: epoch 1/5 val_accuracy=0.7000 loss=0.5000 val_loss=0.6000, at most "
    )
    assert second.startswith(f"final job {job.number}: epoch 2/5 val_accuracy=0.8000 loss=0.4000 val_loss=0.5500")
    assert first.endswith(" left") and second.endswith(" left")
    assert progress.lines() == []  # each epoch once
    store.record_final_epoch(job.id, worker, 5, {"loss": 0.3, "val_accuracy": 0.9, "val_loss": 0.5})
    assert progress.lines() == [f"final job {job.number}: epoch 5/5 val_accuracy=0.9000 loss=0.3000 val_loss=0.5000"]
    # Watching a resumed job: the epochs of the earlier attempt are not printed again.
    assert FinalJobProgress(store, job.id, "val_accuracy").lines() == []
