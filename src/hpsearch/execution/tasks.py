"""What a worker hands its child processes: the task of a trial and of a final job (pickled to the child).
Nothing here imports keras: the worker's own process builds these (see :mod:`hpsearch.execution.children`).

>>> TrialTask(study_name="mnist", number=3, params={"units": 64}, space={"space": []}, hypermodel="m.py:build",
...           base_dir=".", data_dir="/tmp/data-1", objectives=["val_accuracy"], budget_epochs=3, initial_epoch=0,
...           seed=7, checkpoint_dir="/tmp/ckpt", artifact_root="/tmp").budget_epochs
3
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

