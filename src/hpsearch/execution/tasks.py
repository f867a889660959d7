"""What a worker hands its child processes: the task of a trial and of a final job, and the children's entry
points. Nothing here imports keras.

Why a module of its own: the worker's main process only claims, renews leases and writes reports; keras (and
TensorFlow: seconds of CPU and hundreds of MB) belongs to its fork server, which imports it once for every
child (``FORK_SERVER_PRELOAD``). A Process target is pickled by reference, so the parent must import the
module that defines it: the entry points below import the training code only when they run, in a child of
the fork server, where it is already loaded. The study's data is loaded in such a child too (a loader
module may import keras itself).

>>> conn = ...  # the write end of a Pipe; the child sends None, or why loading failed
>>> context.Process(target=load_data, args=("data.py:load", "/studies", "/tmp/data-1", conn))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsearch.space import Value


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
    artifact_root: str
    attempt: int = 1  # the claim's attempt number: it names the checkpoint files
    resume_from: str | None = None
    resume_sha256: str | None = None
    # 0: a checkpoint after every epoch; else at most this often, and always after the last epoch trained.
    checkpoint_seconds: float = 0.0
    batch_size: int | None = None
    shuffle: bool = True
    class_weight: dict[int, float] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    tensorboard_dir: str | None = None
    cv_folds: int | None = None
    cv_repeats: int = 1
    # The stored study file, for hypermodels built from it rather than imported (``[automl]``).
    study_spec: dict[str, Any] | None = None
    # [fit] mixed_precision and jit_compile (see hpsearch.execution.precision).
    mixed_precision: bool = False
    jit_compile: bool | None = None


@dataclass(frozen=True)
class FinalTask:
    """Everything the child needs to run one final job (pickled to the child)."""

    study_name: str
    job_number: int
    trial_number: int
    params: dict[str, Value]
    space: dict[str, Any]
    hypermodel: str
    data: str
    base_dir: str
    data_dir: str
    objective: str
    direction: str
    train_on: str
    epochs: int
    patience: int | None
    seed: int
    output_dir: str
    batch_size: int | None = None
    shuffle: bool = True
    class_weight: dict[int, float] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    slices: list[list[str]] = field(default_factory=list)
    task: str = "auto"
    formats: list[str] = field(default_factory=lambda: ["keras", "savedmodel", "onnx"])
    cv_folds: int | None = None
    cv_repeats: int = 1
    trial_best_epoch: int = 1
    # The stored study file, for hypermodels built from it rather than imported (``[automl]``).
    study_spec: dict[str, Any] | None = None
    # [fit] mixed_precision and jit_compile, as its trials had them (see hpsearch.execution.precision).
    mixed_precision: bool = False
    jit_compile: bool | None = None
    # This claim's number (``output_dir`` is its own directory) and the directory of the attempt whose backup
    # the store accepted last, to resume from (None: start from scratch).
    attempt: int = 1
    resume_dir: str | None = None


def train_trial(task: TrialTask, conn: Any, stop: Any) -> None:
    """A trial's child: :func:`hpsearch.execution.training.run_trial`."""
    from hpsearch.execution.training import run_trial

    run_trial(task, conn, stop)


def run_final(task: FinalTask, conn: Any, stop: Any) -> None:
    """A final job's child: :func:`hpsearch.execution.finaljob.run_final_job`."""
    from hpsearch.execution.finaljob import run_final_job

    run_final_job(task, conn, stop)


def load_data(ref: str, base_dir: str, data_dir: str, conn: Any) -> None:
    """Load a study's data with its loader and write it as .npy files into ``data_dir`` (what every child
    memory-maps); send None, or the loader's error as one line (the worker fails the trial with it)."""
    from hpsearch.execution.loading import load_dataset, save_dataset

    try:
        save_dataset(load_dataset(ref, base_dir), Path(data_dir))
    except Exception as exc:  # the user's loader: any error is the trial's, told in one line
        conn.send(str(exc) or type(exc).__name__)
    else:
        conn.send(None)
    finally:
        conn.close()
