"""Keras glue in the trial's child process: seeds, build, data, callbacks, checkpoints, stop flag.

The worker's fork server preloads this module (and so keras) once; each trial is a fork of it. The child
talks to its worker over a pipe and never touches the database.
"""

from __future__ import annotations

import hashlib
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from hpsearch.loading import (
    check_model,
    keras_inputs,
    load_hypermodel,
    load_object,
    open_dataset,
    study_hypermodel,
)
from hpsearch.space import Value
from hpsearch.spec import StudySpec

CHECKPOINT_PATTERN = "checkpoint-{epoch:04d}.weights.h5"
# A metric hpsearch logs itself when an objective names it (e.g. accuracy against model size).
NUM_PARAMS = "num_params"


@dataclass(frozen=True)
class TrialTask:
    """Everything a child needs to train one trial (pickled to the child)."""

    study_name: str
    number: int
    params: dict[str, Value]
    space: dict[str, Any]
    hypermodel: str
    base_dir: str
    data_dir: str
    objectives: list[str]
    budget_epochs: int
    initial_epoch: int
    seed: int
    checkpoint_dir: str
    resume_from: str | None = None
    resume_sha256: str | None = None
    batch_size: int | None = None
    shuffle: bool = True
    class_weight: dict[int, float] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    tensorboard_dir: str | None = None
    # The stored study file, for hypermodels built from it rather than imported (``[automl]``).
    study_spec: dict[str, Any] | None = None


class TrialFailed(Exception):
    """A failure whose one-line reason is the whole story (no traceback needed)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Reporter(keras.callbacks.Callback):
    """Sends every epoch's logs and a checkpoint (weights + optimizer state) to the worker; obeys stop."""

    def __init__(self, task: TrialTask, conn: Any, stop: Any) -> None:
        super().__init__()
        self.task = task
        self.conn = conn
        self.stop = stop
        self.checked_objective = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop.is_set():
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1  # epochs are counted from 1 in the database: "after epoch 1"
        values = {name: float(value) for name, value in (logs or {}).items()}
        if NUM_PARAMS in self.task.objectives:
            values[NUM_PARAMS] = float(self.model.count_params())
        if not self.checked_objective:
            for objective in self.task.objectives:
                if objective not in values:
                    raise TrialFailed(
                        f"objective {objective!r} is not logged by the model; logged metrics: {sorted(values)}"
                    )
            self.checked_objective = True
        self.conn.send(("epoch", done, values))
        loss = values.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrialFailed(f"{'nan' if math.isnan(loss) else 'inf'} loss at epoch {done}")
        self.conn.send(("checkpoint", done, *save_checkpoint(self.model, Path(self.task.checkpoint_dir), done)))
        if self.stop.is_set():
            self.model.stop_training = True


def save_checkpoint(model: keras.Model, directory: Path, epoch: int) -> tuple[str, str, int]:
    """Atomically write weights and optimizer state after ``epoch``; returns (path, sha256, size). Each
    epoch gets its own file: the one the database names is never being overwritten."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / CHECKPOINT_PATTERN.format(epoch=epoch)
    temporary = directory / f".{final.name}.{os.getpid()}.tmp.weights.h5"
    model.save_weights(temporary)
    digest, size = sha256_of(temporary), temporary.stat().st_size
    os.replace(temporary, final)
    return str(final), digest, size


def restore_checkpoint(model: keras.Model, path: str, sha256: str | None) -> None:
    """Load weights and optimizer state. The optimizer is built first: a fresh optimizer has no slots,
    and Keras then silently skips its saved state (Keras Tuner's promotion bug under Keras 3)."""
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
    """TensorBoard logs for the trial, with its parameters in the HParams dashboard (TensorFlow only)."""
    if task.tensorboard_dir is None or keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    with tf.summary.create_file_writer(task.tensorboard_dir).as_default():
        hparams_api.hparams(dict(params), trial_id=f"{task.study_name}/{task.number}")
    return [keras.callbacks.TensorBoard(log_dir=task.tensorboard_dir)]


def run_trial(task: TrialTask, conn: Any, stop: Any) -> None:
    """Child process entry point. Always ends by sending ("done", ...) or ("failed", reason)."""
    try:
        keras.utils.set_random_seed(task.seed)
        data = open_dataset(Path(task.data_dir))
        if task.study_spec is not None:
            hypermodel = study_hypermodel(StudySpec.model_validate(task.study_spec), task.base_dir, data)
        else:
            hypermodel = load_hypermodel(task.hypermodel, task.base_dir)
        hp = kt.HyperParameters.from_config({"space": task.space["space"], "values": dict(task.params)})
        # A parameter the space learnt after this trial was queued (first declared by another trial) takes
        # its default, as in Keras Tuner.
        hp.ensure_active_values()
        model = hypermodel.build(hp)
        check_model(model, task.hypermodel)
        initial_epoch = task.initial_epoch
        if task.resume_from is not None:
            try:
                restore_checkpoint(model, task.resume_from, task.resume_sha256)
            except (TrialFailed, OSError, ValueError) as exc:
                # An unusable checkpoint costs the epochs it held, not the trial.
                conn.send(("restart", f"checkpoint unusable ({exc}); restarted from scratch"))
                model = hypermodel.build(hp)
                initial_epoch = 0
        train, validation = data["train"], data["validation"]
        fit_kwargs: dict[str, Any] = {
            "x": keras_inputs(train.x),
            "y": train.y,
            "validation_data": (keras_inputs(validation.x), validation.y),
            "epochs": task.budget_epochs,
            "initial_epoch": initial_epoch,
            "callbacks": [
                *make_callbacks(task.callbacks, task.base_dir),
                *tensorboard_callbacks(task, hp.values),
                Reporter(task, conn, stop),
            ],
            "shuffle": task.shuffle,
            "verbose": 0,
        }
        if task.batch_size is not None:
            fit_kwargs["batch_size"] = task.batch_size
        if task.class_weight:
            fit_kwargs["class_weight"] = task.class_weight
        if initial_epoch < task.budget_epochs:
            hypermodel.fit(hp, model, **fit_kwargs)
        conn.send(("done", dict(hp.values), hp.get_config()["space"]))
    except (TrialFailed, kt.errors.FailedTrialError) as exc:
        conn.send(("failed", str(exc)))
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()
