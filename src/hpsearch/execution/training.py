"""Keras glue in the trial's child process: seeds, build, data, callbacks, checkpoints, stop flag.

The worker's fork server preloads this module (and so keras) once; each trial is a fork of it. The child
talks to its worker over a pipe and never touches the database.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from hpsearch.execution.failures import recurs_in_every_trial
from hpsearch.execution.fitting import fit_hypermodel
from hpsearch.execution.hypermodels import study_hypermodel
from hpsearch.execution.loading import (
    Dataset,
    Inputs,
    Split,
    check_model,
    keras_inputs,
    load_hypermodel,
    load_object,
    open_dataset,
)
from hpsearch.execution.precision import apply_fit_options
from hpsearch.execution.protocol import CheckpointWritten, ChildFailed, EpochEnded, RestartedFromScratch, TrialDone
from hpsearch.execution.tasks import TrialTask
from hpsearch.limits import first_too_long
from hpsearch.paths import UnsafePath, stored_artifact
from hpsearch.space import Value
from hpsearch.spec import StudySpec

# Named by attempt and epoch: a worker that lost its lease (its child still training) never writes over the
# file the trial's current attempt recorded; only the owner's record_checkpoint makes a file the trial's.
CHECKPOINT_PATTERN = "checkpoint-a{attempt}-{epoch:04d}.weights.h5"
# A metric hpsearch logs itself when an objective names it (e.g. accuracy against model size).
NUM_PARAMS = "num_params"


class TrialFailed(Exception):
    """A failure whose one-line reason is the whole story (no traceback needed); ``recurring`` when every
    trial would fail the same way (the study then fails at once)."""

    def __init__(self, reason: str, *, recurring: bool = False) -> None:
        super().__init__(reason)
        self.recurring = recurring


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StopAware(keras.callbacks.Callback):
    """Ends training at the next batch once the worker sets ``stop`` (pruned, study stopped, shutdown)."""

    def __init__(self, stop: Any) -> None:
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop.is_set():
            self.model.stop_training = True


class Reporter(StopAware):
    """Sends every epoch's logs and a checkpoint (weights + optimizer state) to the worker; obeys stop."""

    def __init__(self, task: TrialTask, conn: Any, stop: Any) -> None:
        super().__init__(stop)
        self.task = task
        self.conn = conn
        self.checked_objective = False
        self.checkpointed_at = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.report(epoch, {name: float(value) for name, value in (logs or {}).items()})

    def report(self, epoch: int, values: dict[str, float], checkpoint: bool = True) -> None:
        done = epoch + 1  # epochs are counted from 1 in the database: "after epoch 1"
        if NUM_PARAMS in self.task.objectives:
            values[NUM_PARAMS] = float(self.model.count_params())
        if not self.checked_objective:
            for objective in self.task.objectives:
                if objective not in values:
                    raise TrialFailed(
                        f"objective {objective!r} is not logged by the model; logged metrics: {sorted(values)}",
                        recurring=True,
                    )
            self.checked_objective = True
        too_long = first_too_long(values, "metric")
        if too_long is not None:  # the database's name columns: PostgreSQL would refuse the row, SQLite not
            raise TrialFailed(f"{too_long} (logged at epoch {done})")
        self.conn.send(EpochEnded(done, values))
        loss = values.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrialFailed(f"{'nan' if math.isnan(loss) else 'inf'} loss at epoch {done}")
        if checkpoint and self._checkpoint_due(done):
            saved = save_checkpoint(self.model, Path(self.task.checkpoint_dir), done, self.task.attempt)
            self.conn.send(CheckpointWritten(done, *saved))
            self.checkpointed_at = time.monotonic()
        if self.stop.is_set():
            self.model.stop_training = True

    def _checkpoint_due(self, done: int) -> bool:
        """Every epoch, or (``checkpoint_seconds``) when the interval has passed and after the last epoch this
        fit runs: its budget's, or one after which it stops (a stop request; EarlyStopping or another callback
        placed before this one set ``stop_training``), written before EarlyStopping restores best weights."""
        interval = self.task.checkpoint_seconds
        return (
            not interval
            or done >= self.task.budget_epochs
            or self.stop.is_set()
            or self.model.stop_training
            or time.monotonic() - self.checkpointed_at >= interval
        )


def save_checkpoint(model: keras.Model, directory: Path, epoch: int, attempt: int = 1) -> tuple[str, str, int]:
    """Atomically write weights and optimizer state after ``epoch``; returns (path, sha256, size). Each
    attempt's epoch gets its own file: the one the database names is never being overwritten."""
    final = directory / CHECKPOINT_PATTERN.format(attempt=attempt, epoch=epoch)
    temporary = directory / f".{final.name}.{os.getpid()}.tmp.weights.h5"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        model.save_weights(temporary)
        digest, size = sha256_of(temporary), temporary.stat().st_size
        os.replace(temporary, final)
    except OSError as exc:  # a full or read-only artifact root: say so, and leave no partial file behind
        if temporary.exists():
            temporary.unlink()
        raise TrialFailed(f"cannot write checkpoint {final}: {exc.strerror or exc}") from None
    return str(final), digest, size


def restore_checkpoint(model: keras.Model, path: str, sha256: str | None, artifact_root: str) -> None:
    """Load weights and optimizer state. The optimizer is built first: a fresh optimizer has no slots,
    and Keras then silently skips its saved state (Keras Tuner's promotion bug under Keras 3)."""
    try:
        stored_artifact(artifact_root, path)  # the database names it: never read outside the root
    except UnsafePath as exc:
        raise TrialFailed(f"{exc.where}: {exc.what}") from None
    if not Path(path).is_file():
        raise TrialFailed(f"checkpoint {path} is missing")
    if sha256 is not None and sha256_of(Path(path)) != sha256:
        raise TrialFailed(f"checkpoint {path} does not match its sha256")
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


def make_callbacks(specs: list[dict[str, Any]], base_dir: str) -> list[keras.callbacks.Callback]:
    callbacks = []
    for spec in specs:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
        cls = load_object(name, base_dir) if ":" in name else getattr(keras.callbacks, name, None)
        if cls is None:
            raise TrialFailed(f"fit.callbacks: keras.callbacks has no {name!r}")
        callbacks.append(cls(**kwargs))
    return callbacks


def tensorboard_callbacks(task: TrialTask, params: dict[str, Any]) -> list[keras.callbacks.Callback]:
    """TensorBoard logs for the trial, with its parameters in the HParams dashboard, on every backend: Keras'
    callback and the summary writer use TensorFlow's, which hpsearch installs whatever the backend."""
    if task.tensorboard_dir is None:
        return []
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    with tf.summary.create_file_writer(task.tensorboard_dir).as_default():
        hparams_api.hparams(dict(params), trial_id=f"{task.study_name}/{task.number}")
    return [keras.callbacks.TensorBoard(log_dir=task.tensorboard_dir)]


def fold_splits(y: np.ndarray, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) indices of ``repeats`` reshuffled K-fold partitions; stratified for class labels."""
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(y)
    stratify = (
        labels.ndim == 1 and labels.dtype.kind in "biu" and labels.min() >= 0 and np.bincount(labels).min() >= folds
    )
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    for repeat in range(repeats):
        splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed + repeat)
        splits.extend(splitter.split(np.zeros(len(labels)), labels if stratify else None))
    return splits


def _rows(split: Split, rows: np.ndarray) -> Split:
    x = {k: np.asarray(v)[rows] for k, v in split.x.items()} if isinstance(split.x, dict) else split.x[rows]
    return Split(x, split.y[rows], split.weight[rows] if split.weight is not None else None)


def joined(first: Split, second: Split) -> Split:
    """Two splits as one (K-fold pools train and validation; so does a final job on train+validation)."""
    if isinstance(first.x, dict) and isinstance(second.x, dict):
        x: Inputs = {k: np.concatenate([first.x[k], second.x[k]]) for k in first.x}
    else:
        x = np.concatenate([first.x, second.x])
    weight = None
    if first.weight is not None or second.weight is not None:
        weight = np.concatenate(
            [s.weight if s.weight is not None else np.ones(len(s), "float32") for s in (first, second)]
        )
    return Split(x, np.concatenate([first.y, second.y]), weight)


class _Curve(StopAware):
    """Keeps one fold's logs per epoch; obeys stop."""

    def __init__(self, stop: Any) -> None:
        super().__init__(stop)
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append({name: float(value) for name, value in (logs or {}).items()})


def cross_validate(
    task: TrialTask, hypermodel: Any, hp: Any, data: Dataset, epochs: int, stop: Any
) -> list[dict[str, float]]:
    """Train one model per fold of train + validation; per epoch, every metric's mean over the folds that
    reached it, and its standard deviation as ``<name>_std``."""
    assert task.cv_folds is not None
    pool = joined(data["train"], data["validation"])
    curves = []
    for index, (train_rows, held_rows) in enumerate(fold_splits(pool.y, task.cv_folds, task.cv_repeats, task.seed)):
        if stop.is_set():
            break
        keras.utils.set_random_seed(task.seed + index)
        model = hypermodel.build(hp)
        check_model(model, task.hypermodel)
        curve = _Curve(stop)
        x, y, passed = fit_arguments(
            _rows(pool, train_rows),
            _rows(pool, held_rows),
            epochs,
            batch_size=task.batch_size,
            shuffle=task.shuffle,
            class_weight=task.class_weight,
        )
        passed["callbacks"] = [*make_callbacks(task.callbacks, task.base_dir), curve]
        fit_hypermodel(hypermodel, hp, model, x, y, passed=passed, added={"verbose": 0}, label=task.hypermodel)
        curves.append(curve.epochs)
    summary = []
    for epoch in range(max((len(c) for c in curves), default=0)):
        reached = [c[epoch] for c in curves if len(c) > epoch]
        values: dict[str, float] = {}
        for name in reached[0]:
            column = np.array([logs[name] for logs in reached if name in logs])
            values[name] = float(column.mean())
            values[f"{name}_std"] = float(column.std())
        summary.append(values)
    return summary


def fit_arguments(
    train: Split,
    validation: Split | None,
    epochs: int,
    *,
    batch_size: int | None,
    shuffle: bool,
    class_weight: dict[int, float],
) -> tuple[Any, Any, dict[str, Any]]:
    """``x``, ``y`` and the keyword arguments Keras Tuner's ``search()`` would pass on to ``HyperModel.fit`` for
    a training split (and a validation split): epochs, validation data, sample weights and the ``[fit]``
    settings that differ from Keras' defaults, inputs as Keras takes them; callbacks are the caller's, and
    hpsearch's own settings (``verbose``, ``initial_epoch``) go to :func:`~hpsearch.execution.fitting.
    fit_hypermodel` (which lets the user's ``fit`` win over any of these).

    >>> x, y, passed = fit_arguments(train, None, 3, batch_size=32, shuffle=True, class_weight={})  # doctest: +SKIP
    >>> sorted(passed)  # doctest: +SKIP
    ['batch_size', 'epochs']
    """
    kwargs: dict[str, Any] = {"epochs": epochs}
    if not shuffle:  # Keras shuffles by default: say nothing unless the study file turned it off
        kwargs["shuffle"] = False
    if validation is not None:
        kwargs["validation_data"] = (keras_inputs(validation.x), validation.y) + (
            (validation.weight,) if validation.weight is not None else ()
        )
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if class_weight:
        kwargs["class_weight"] = class_weight
    if train.weight is not None:
        kwargs["sample_weight"] = train.weight
    return keras_inputs(train.x), train.y, kwargs


def _report_cross_validation(task: TrialTask, summary: list[dict[str, float]], model: Any, conn: Any) -> None:
    """Send the fold means per epoch as the trial's curve (K models have no single checkpoint)."""
    reporter = Reporter(task, conn, threading.Event())  # training is over: nothing left to stop
    reporter.set_model(model)
    for epoch, values in enumerate(summary):
        reporter.report(epoch, values, checkpoint=False)


def build_inputs(
    hypermodel_ref: str,
    study_spec: dict[str, Any] | None,
    base_dir: str,
    data: Dataset,
    task_space: dict[str, Any],
    params: dict[str, Value],
) -> tuple[Any, Any]:
    """The hypermodel (imported, or built from the stored ``[automl]`` spec on ``data``) and the
    HyperParameters holding ``params``; a parameter the space learnt after they were chosen (first declared by
    another trial) takes its default, as in Keras Tuner."""
    if study_spec is not None:
        hypermodel = study_hypermodel(StudySpec.model_validate(study_spec), base_dir, data)
    else:
        hypermodel = load_hypermodel(hypermodel_ref, base_dir)
    hp = kt.HyperParameters.from_config({"space": task_space["space"], "values": dict(params)})
    hp.ensure_active_values()
    return hypermodel, hp


def run_trial(task: TrialTask, conn: Any, stop: Any) -> None:
    """Child process entry point. Always ends by sending :class:`TrialDone` or :class:`ChildFailed`."""
    try:
        apply_fit_options(task.mixed_precision, task.jit_compile)
        keras.utils.set_random_seed(task.seed)
        data = open_dataset(Path(task.data_dir))
        hypermodel, hp = build_inputs(task.hypermodel, task.study_spec, task.base_dir, data, task.space, task.params)
        if task.cv_folds is not None:
            summary = cross_validate(task, hypermodel, hp, data, task.budget_epochs, stop)
            _report_cross_validation(task, summary, hypermodel.build(hp), conn)
            conn.send(TrialDone(dict(hp.values), hp.get_config()["space"]))
            return
        model = hypermodel.build(hp)
        check_model(model, task.hypermodel)
        initial_epoch = task.initial_epoch
        if task.resume_from is not None:
            try:
                restore_checkpoint(model, task.resume_from, task.resume_sha256, task.artifact_root)
            except (TrialFailed, OSError, ValueError) as exc:
                # An unusable checkpoint costs the epochs it held, not the trial.
                conn.send(RestartedFromScratch(f"checkpoint unusable ({exc}); restarted from scratch"))
                model = hypermodel.build(hp)
                initial_epoch = 0
        x, y, passed = fit_arguments(
            data["train"],
            data["validation"],
            task.budget_epochs,
            batch_size=task.batch_size,
            shuffle=task.shuffle,
            class_weight=task.class_weight,
        )
        passed["callbacks"] = [
            *make_callbacks(task.callbacks, task.base_dir),
            *tensorboard_callbacks(task, hp.values),
            Reporter(task, conn, stop),
        ]
        if initial_epoch < task.budget_epochs:
            added = {"verbose": 0, "initial_epoch": initial_epoch}
            fit_hypermodel(hypermodel, hp, model, x, y, passed=passed, added=added, label=task.hypermodel)
        conn.send(TrialDone(dict(hp.values), hp.get_config()["space"]))
    except (TrialFailed, kt.errors.FailedTrialError) as exc:
        conn.send(ChildFailed(str(exc), recurring=getattr(exc, "recurring", False)))
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        conn.send(ChildFailed(text, recurring=recurs_in_every_trial(exc)))
    finally:
        conn.close()
