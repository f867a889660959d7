"""Promotion: choose the trial, plan its final job, and (with ``--local``) run it in this process's worker.

The job itself (retrain, evaluate, export) runs in a worker's child process: see :mod:`hpsearch.execution.finaljob`.
Epochs: on ``train`` the job trains up to ``epochs`` (default: the study's max_epochs) and early-stops on
the validation split with ``patience``; on ``train+validation`` nothing is held out for early stopping, so
it trains for the promoted trial's best epoch count, as AutoKeras' ``final_fit`` does: the same number of
passes over a larger set. Never imports keras.
"""

from __future__ import annotations

import os
import socket

from hpsearch.errors import UsageError
from hpsearch.spec import StudySpec
from hpsearch.store import Store, TrialState
from hpsearch.store.records import FinalJobRecord, NewFinalJob, StudyRecord, TrialRecord


def chosen_trial(store: Store, study: StudyRecord, number: int | None) -> TrialRecord:
    if number is None:
        best = store.best_trial(study)
        if best is None:
            raise UsageError(f"study {study.name}", "no completed trial to promote")
        return best
    trial = store.trial(study.id, number)
    if trial.state != TrialState.COMPLETED:
        raise UsageError(f"trial {number}", f"is {trial.state}; only a COMPLETED trial can be promoted")
    return trial


def plan_final_job(
    store: Store,
    study: StudyRecord,
    *,
    trial_number: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    on: str | None = None,
) -> NewFinalJob:
    """The unsaved final job for a study's best (or chosen) trial; options override the study file."""
    trial = chosen_trial(store, study, trial_number)
    settings = StudySpec.model_validate(study.spec).promote
    on = on or settings.on
    if on not in ("train", "train+validation"):
        raise UsageError("--on", f"must be 'train' or 'train+validation' (got {on!r})")
    for name, value in (("--epochs", epochs), ("--patience", patience)):
        if value is not None and value <= 0:
            raise UsageError(name, f"must be a positive number of epochs (got {value})")
    if on == "train+validation":
        epochs = epochs or trial.best_epoch or trial.epochs_done
        patience = None
    else:
        epochs = epochs or settings.epochs or study.max_epochs
        patience = patience or settings.patience
    return NewFinalJob(
        study_id=study.id,
        trial_id=trial.id,
        params=dict(trial.params),
        train_on=on,
        epochs=epochs,
        patience=patience,
        seed=trial.seed,
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_over_if_abandoned(store: Store, job: FinalJobRecord) -> None:
    """A job left RUNNING by a process of this host that is gone (a killed ``promote --local``) is queued
    again at once, so running promote again resumes it instead of waiting for its lease to expire."""
    if job.state != TrialState.RUNNING:
        return
    worker = store.final_job_worker(job.id)
    if worker is not None and worker.host == socket.gethostname() and not _process_alive(worker.pid):
        store.requeue_final_job(job.id, f"its process {worker.pid} on {worker.host} is gone; resumed")


def running_in_another_process_here(store: Store, job: FinalJobRecord) -> bool:
    """Whether a live process of this host other than this one runs ``job`` (a second ``promote --local``
    started at the same time): the caller waits for its result rather than failing or running it twice."""
    if job.state != TrialState.RUNNING:
        return False
    worker = store.final_job_worker(job.id)
    return (
        worker is not None
        and worker.host == socket.gethostname()
        and worker.pid != os.getpid()
        and _process_alive(worker.pid)
    )
