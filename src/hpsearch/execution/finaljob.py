"""The final job's child process: retrain the promoted parameters, evaluate on the test split, export.

Training uses EarlyStopping (restore_best_weights), ModelCheckpoint (best by the study objective) and
BackupAndRestore, so a killed job resumes at the epoch where it stopped, with its optimizer state and its
early-stopping counters (kept in ``fit_state.json`` beside the backup). Like a trial's child, it talks to
its worker over a pipe and never touches the database.

Each attempt (claim) of a job works in a directory of its own, ``final/<number>/a<attempt>/``: a ``promote``
frozen past its lease that wakes up writes only there, never into the files of the attempt that took the
job over. After each epoch's backup the child says so (:class:`BackupWritten`); the store accepts that only
from the attempt holding the job, and the next attempt starts from a copy of the accepted attempt's fit
state, best weights and backup (:func:`copy_resume_state`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from hpsearch.execution.evaluation import evaluate_predictions
from hpsearch.execution.exports import backend_info, export_model, software_versions
from hpsearch.execution.fitting import fit_hypermodel
from hpsearch.execution.loading import Split, check_model, keras_inputs, open_dataset
from hpsearch.execution.precision import apply_fit_options
from hpsearch.execution.protocol import BackupWritten, ChildFailed, EpochEnded, ExportedFile, FinalResult
from hpsearch.execution.tasks import FinalTask
from hpsearch.execution.training import (
    StopAware,
    TrialFailed,
    TrialTask,
    build_inputs,
    cross_validate,
    fit_arguments,
    joined,
    make_callbacks,
    sha256_of,
)

BEST_WEIGHTS = "best.weights.h5"
FIT_STATE = "fit_state.json"
BACKUP = "backup"
# What a resumed attempt copies from the attempt whose backup the store accepted last.
RESUMED = (FIT_STATE, BEST_WEIGHTS, BACKUP)


def _listing(directory: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file of ``directory`` that a resumed attempt copies."""
    found = []
    for name in RESUMED:
        item = directory / name
        for path in sorted(item.rglob("*")) if item.is_dir() else [item] if item.exists() else []:
            if path.is_file():
                stat = path.stat()
                found.append((str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns))
    return found


def copy_resume_state(source: Path, out: Path, tries: int = 3) -> bool:
    """Copy an earlier attempt's fit state, best weights and backup from ``source`` into this attempt's
    ``out``; True when ``out`` holds a state to resume from. The copy counts only if no file of ``source``
    changed while it was made (a stale attempt of a frozen worker may still be writing there until its next
    report is refused); after ``tries`` torn copies the job starts from scratch, which is slower, never wrong.

    >>> copy_resume_state(Path("final/1/a1"), Path("final/1/a2"))  # doctest: +SKIP
    True
    """
    if (out / FIT_STATE).exists() or source == out or not (source / FIT_STATE).is_file():
        return (out / FIT_STATE).exists()
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(tries):
        try:
            before = _listing(source)
            for name in RESUMED:
                if (source / name).is_dir():
                    shutil.copytree(source / name, out / name, dirs_exist_ok=True)
                elif (source / name).is_file():
                    shutil.copy2(source / name, out / name)
            if _listing(source) == before:
                return True
        except OSError:  # a file replaced or removed under the copy
            pass
        for name in RESUMED:
            if (out / name).is_dir():
                shutil.rmtree(out / name, ignore_errors=True)
            else:
                (out / name).unlink(missing_ok=True)
        time.sleep(0.5)
    return False


class BackupReporter(keras.callbacks.Callback):
    """Placed after BackupAndRestore: tells the worker each epoch's backup is complete in this attempt's
    directory, so the store can name this attempt as the one to resume from."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.conn.send(BackupWritten(epoch + 1))


class FitState(keras.callbacks.Callback):
    """Keeps what BackupAndRestore does not: EarlyStopping's patience counter and best value, the best
    epoch so far, so that a resumed job stops where an uninterrupted one would have, and every epoch's logs,
    so that a resumed job re-sends those the worker may not have recorded before the kill."""

    def __init__(
        self,
        path: Path,
        checkpoint: keras.callbacks.ModelCheckpoint,
        early_stopping: keras.callbacks.EarlyStopping | None,
        monitor: str,
        mode: str,
    ) -> None:
        super().__init__()
        self.path = path
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.last_epoch = 0
        self.start_epochs: list[int] = []  # the epoch each attempt started from: [0, 7] = resumed after 7
        self.finished = False  # training ended (epochs done or early-stopped): a rerun only evaluates
        self.history: dict[int, dict[str, float]] = {}  # epoch (1-based) -> its logs

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.path.exists():
            self.start_epochs = [0]
            return
        state = json.loads(self.path.read_text())
        self.best, self.best_epoch, self.last_epoch = state["best"], state["best_epoch"], state["epoch"]
        self.start_epochs = [*state["start_epochs"], self.last_epoch]
        self.finished = state["finished"]
        self.history = {int(epoch): logs for epoch, logs in state.get("history", {}).items()}
        if self.best is not None:
            self.checkpoint.best = self.best
        if self.early_stopping is not None and state["wait"] is not None:
            self.early_stopping.wait = state["wait"]
            if self.best is not None:
                self.early_stopping.best = self.best

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self.model.stop_training or self.early_stopping is None or self.early_stopping.stopped_epoch:
            self.finished = True
            self._save()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.last_epoch = epoch + 1
        self.history[epoch + 1] = {name: float(value) for name, value in (logs or {}).items()}
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(float(value)):
            value = float(value)
            if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
                self.best, self.best_epoch = value, epoch + 1
        self._save()

    def _save(self) -> None:
        state = {
            "epoch": self.last_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.early_stopping.wait if self.early_stopping is not None else None,
            "start_epochs": self.start_epochs,
            "finished": self.finished,
            "history": self.history,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)


class FinalReporter(StopAware):
    """Sends every epoch's logs to the worker; fails on a NaN loss; obeys stop.

    A resumed job first re-sends the logs ``fit_state`` kept for the epochs before the one it starts from:
    a kill can fall after an epoch's backup but before the worker recorded that epoch, and recording an
    epoch twice is harmless (the store's epoch writes are idempotent).
    """

    def __init__(self, conn: Any, stop: Any, fit_state: FitState) -> None:
        super().__init__(stop)
        self.conn = conn
        self.fit_state = fit_state
        self.replayed = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.replayed:  # the first epoch of this attempt: ``epoch`` epochs are done already
            self.replayed = True
            for done in sorted(e for e in self.fit_state.history if e <= epoch):
                self.conn.send(EpochEnded(done, self.fit_state.history[done]))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {name: float(value) for name, value in (logs or {}).items()}
        self.conn.send(EpochEnded(epoch + 1, values))
        loss = values.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrialFailed(f"{'nan' if math.isnan(loss) else 'inf'} loss at epoch {epoch + 1} of the final job")


def training_data(train: Split, validation: Split, train_on: str) -> tuple[Split, Split | None]:
    """ "train": fit on train, early-stop on validation; "train+validation": fit on both, nothing held out."""
    return (train, validation) if train_on == "train" else (joined(train, validation), None)


def tree_sha256(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, or of a directory as the hash of its files' relative paths and hashes."""
    if path.is_file():
        return sha256_of(path), path.stat().st_size
    digest, size = hashlib.sha256(), 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_of(item)}\n".encode())
        size += item.stat().st_size
    return digest.hexdigest(), size


def _cross_validation_estimate(
    task: FinalTask, hypermodel: Any, hp: Any, data: dict[str, Split], stop: Any
) -> dict[str, float]:
    """The study's K-fold protocol on train + validation, reshuffled (a partition the search did not select
    on), training for the promoted trial's best epoch count: ``cv_<metric>`` means and ``cv_<metric>_std``."""
    protocol = TrialTask(
        study_name=task.study_name,
        number=task.trial_number,
        params=task.params,
        space=task.space,
        hypermodel=task.hypermodel,
        base_dir=task.base_dir,
        data_dir=task.data_dir,
        objectives=[task.objective],
        budget_epochs=task.trial_best_epoch,
        initial_epoch=0,
        seed=task.seed + 1_000_003,
        checkpoint_dir="",
        artifact_root=task.output_dir,
        batch_size=task.batch_size,
        shuffle=task.shuffle,
        class_weight=task.class_weight,
        callbacks=[c for c in task.callbacks if c["name"] != "EarlyStopping"],
        cv_folds=task.cv_folds,
        cv_repeats=task.cv_repeats,
    )
    summary = cross_validate(protocol, hypermodel, hp, data, task.trial_best_epoch, stop)
    return {f"cv_{name}": value for name, value in (summary[-1] if summary else {}).items()}


def run_final_job(task: FinalTask, conn: Any, stop: Any) -> None:
    """Child process entry point. Always ends by sending :class:`FinalResult` or :class:`ChildFailed`."""
    try:
        conn.send(_train_evaluate_export(task, conn, stop))
    except TrialFailed as exc:
        conn.send(ChildFailed(str(exc)))
    except Exception as exc:
        conn.send(ChildFailed(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def _named(class_rows: list[dict[str, Any]], confusion: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The model card's per-class rows, each with its ``class_name`` when the loader named the classes (the
    names travel in the confusion matrix's JSON; the database keeps the class index as ``class_label``).

    >>> _named([{"class_label": "1"}], {"labels": [0, 1], "class_names": ["died", "survived"]})
    [{'class_label': '1', 'class_name': 'survived'}]
    """
    confusion = confusion or {}
    names = dict(zip(map(str, confusion.get("labels") or []), confusion.get("class_names") or [], strict=False))
    named = [row | {"class_name": names[row["class_label"]]} for row in class_rows if row["class_label"] in names]
    return named if len(named) == len(class_rows) else class_rows


def _train_evaluate_export(task: FinalTask, conn: Any, stop: Any) -> FinalResult:
    apply_fit_options(task.mixed_precision, task.jit_compile)
    keras.utils.set_random_seed(task.seed)
    out = Path(task.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if task.resume_dir is not None:
        copy_resume_state(Path(task.resume_dir), out)
    data = open_dataset(Path(task.data_dir))
    hypermodel, hp = build_inputs(task.hypermodel, task.study_spec, task.base_dir, data, task.space, task.params)
    model = hypermodel.build(hp)
    check_model(model, task.hypermodel)
    if "test" not in data:
        raise TrialFailed(f"{task.data}: returns no 'test' split; promote evaluates the final model on it")
    train, held_out = training_data(data["train"], data["validation"], task.train_on)
    early_stopping = None
    if held_out is not None:
        monitor, mode = task.objective, task.direction
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=task.patience or 1, restore_best_weights=True
        )
    else:  # nothing held out: the last epoch is the model
        monitor, mode = "loss", "min"
    checkpoint = keras.callbacks.ModelCheckpoint(
        out / BEST_WEIGHTS,
        monitor=monitor,
        mode=mode,
        save_best_only=held_out is not None,
        save_weights_only=True,
    )
    fit_state = FitState(out / FIT_STATE, checkpoint, early_stopping, monitor, mode)
    # The study's own EarlyStopping served the search; the final job's early stopping is ours.
    user_callbacks = [c for c in task.callbacks if c["name"] != "EarlyStopping"]
    # BackupAndRestore comes last but for BackupReporter (which reports the backup just written): an epoch's
    # backup exists only once fit_state has kept its logs and state, so a resume from any backup can re-send
    # every epoch it skips (FinalReporter) and stop as an uninterrupted run would. Kept after training: a job
    # that fails later (export) resumes with training done.
    callbacks = [
        *make_callbacks(user_callbacks, task.base_dir),
        checkpoint,
        *([early_stopping] if early_stopping is not None else []),
        fit_state,
        FinalReporter(conn, stop, fit_state),
        keras.callbacks.BackupAndRestore(str(out / BACKUP), double_checkpoint=True, delete_checkpoint=False),
        BackupReporter(conn),
    ]
    x, y, passed = fit_arguments(
        train, held_out, task.epochs, batch_size=task.batch_size, shuffle=task.shuffle, class_weight=task.class_weight
    )
    passed["callbacks"] = callbacks
    state_file = out / FIT_STATE
    if state_file.exists() and json.loads(state_file.read_text())["finished"]:
        fit_state.on_train_begin()  # trained by an earlier attempt that failed after training: evaluate only
    else:
        # BackupAndRestore sets the epoch a resumed job starts from: hpsearch adds no initial_epoch here.
        fit_hypermodel(hypermodel, hp, model, x, y, passed=passed, added={"verbose": 0}, label=task.hypermodel)
    if stop.is_set():
        raise TrialFailed("stopped before the end of training")
    if (out / BEST_WEIGHTS).exists():  # the best epoch's weights, also after a resume
        model.load_weights(out / BEST_WEIGHTS)

    test = data["test"]
    cv_estimate = _cross_validation_estimate(task, hypermodel, hp, data, stop) if task.cv_folds else {}
    test_metrics = model.evaluate(keras_inputs(test.x), test.y, sample_weight=test.weight, return_dict=True, verbose=0)
    predictions = model.predict(keras_inputs(test.x), verbose=0)
    evaluation = evaluate_predictions(
        np.asarray(test.y),
        np.asarray(predictions),
        task=task.task,  # type: ignore[arg-type]
        thresholds=task.thresholds,
        features=test.slices,
        slices=task.slices,
        class_names=test.class_names,
    )
    written, skipped = export_model(model, out, task.formats, test.x, np.asarray(predictions))
    written["predictions"] = out / "test_predictions.npy"  # what the exported models must reproduce
    np.save(written["predictions"], np.asarray(predictions))
    metrics = {name: float(value) for name, value in test_metrics.items()} | cv_estimate
    class_rows = [dataclasses.asdict(row) for row in evaluation.class_rows]
    slice_rows = [dataclasses.asdict(row) for row in evaluation.slice_rows]
    card = {
        "study": task.study_name,
        "final_job": task.job_number,
        "attempt": task.attempt,
        "trial": task.trial_number,
        "params": task.params,
        "objective": {"name": task.objective, "direction": task.direction, "best": fit_state.best},
        "training": {
            "on": task.train_on,
            "epochs": task.epochs,
            "epochs_trained": fit_state.last_epoch,
            "start_epochs": fit_state.start_epochs,
            "best_epoch": fit_state.best_epoch,
            "patience": task.patience,
            "seed": task.seed,
            "batch_size": task.batch_size,
            "class_weight": task.class_weight,
        },
        "data": {
            "loader": task.data,
            "examples": {name: len(split) for name, split in data.items()},
            "slice_features": sorted(test.slices or {}),
        },
        "task": evaluation.task,
        "test_metrics": metrics,
        "class_metrics": _named(class_rows, evaluation.confusion),
        "confusion_matrix": evaluation.confusion,
        "slices": slice_rows,
        "exports": {kind: path.name for kind, path in written.items()},
        "skipped_exports": skipped,
        "backend": backend_info(),
        "software": software_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    card_path = out / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2, default=float))
    shutil.rmtree(out / BACKUP, ignore_errors=True)
    artifacts = [(kind, path) for kind, path in written.items()] + [("model_card", card_path)]
    if (out / BEST_WEIGHTS).exists():
        artifacts.append(("best_weights", out / BEST_WEIGHTS))
    return FinalResult(
        best_epoch=fit_state.best_epoch,
        objective=fit_state.best,
        test_metrics=metrics,
        confusion=evaluation.confusion,
        class_rows=class_rows,
        slice_rows=slice_rows,
        artifacts=tuple(ExportedFile(kind, str(path), *tree_sha256(path)) for kind, path in artifacts),
    )
