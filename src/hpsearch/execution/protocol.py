"""What a child process (a trial or a final job) tells its worker, one frozen message per fact.

The child sends these over a one-way pipe (pickled); the worker's :class:`~hpsearch.execution.supervisor.
Supervisor` decodes them with ``match`` on their type. A child sends any number of progress messages
(:class:`EpochEnded`, :class:`CheckpointWritten`, :class:`BackupWritten`, :class:`RestartedFromScratch`) and
ends with exactly one result (:class:`TrialDone` or :class:`FinalResult`, or :class:`ChildFailed`). A child
that dies first sends no result: its exit code says why. This module imports nothing heavy: the worker loads
it without keras.

>>> message = EpochEnded(epoch=1, logs={"val_accuracy": 0.9})
>>> match message:
...     case EpochEnded(epoch=epoch, logs=logs):
...         print(epoch, logs["val_accuracy"])
1 0.9
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpochEnded:
    """An epoch ended with these logs; ``epoch`` counts from 1 ("after epoch 1").

    >>> EpochEnded(2, {"loss": 0.5}).epoch
    2
    """

    epoch: int
    logs: dict[str, float]


@dataclass(frozen=True)
class CheckpointWritten:
    """A trial's weights and optimizer state after ``epoch`` were written atomically to ``uri``.

    >>> CheckpointWritten(3, "/art/s/trials/0/checkpoint-a1-0003.weights.h5", "0" * 64, 1024).size_bytes
    1024
    """

    epoch: int
    uri: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class BackupWritten:
    """A final job's backup after ``epoch`` (weights, optimizer state, fit state) is complete in its attempt's
    directory: once the store accepts it, the job's next attempt resumes from a copy of that directory.

    >>> BackupWritten(3).epoch
    3
    """

    epoch: int


@dataclass(frozen=True)
class RestartedFromScratch:
    """The checkpoint a trial was to resume from is unusable; it trains again from epoch 0.

    >>> RestartedFromScratch("checkpoint unusable (bad sha256); restarted from scratch").reason[:10]
    'checkpoint'
    """

    reason: str


@dataclass(frozen=True)
class TrialDone:
    """A trial finished training: every parameter's value (also those its ``fit`` declared) and the space's
    entries as the trial's HyperParameters hold them (so the study learns parameters declared in ``fit``).

    >>> TrialDone({"units": 32}, []).values
    {'units': 32}
    """

    values: dict[str, Any]
    space: list[dict[str, Any]]


@dataclass(frozen=True)
class ExportedFile:
    """A file (or directory) a final job wrote, as the database records it.

    >>> ExportedFile("keras", "/art/s/final/0/model.keras", "0" * 64, 2048).kind
    'keras'
    """

    kind: str
    uri: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class FinalResult:
    """A final job trained, evaluated on the test split and exported its model.

    >>> FinalResult(best_epoch=4, objective=0.93, test_metrics={"accuracy": 0.92}).artifacts
    ()
    """

    best_epoch: int | None
    objective: float | None
    test_metrics: dict[str, float]
    confusion: dict[str, list[object]] | None = None
    class_rows: list[dict[str, Any]] = field(default_factory=list)
    slice_rows: list[dict[str, Any]] = field(default_factory=list)
    artifacts: tuple[ExportedFile, ...] = ()


@dataclass(frozen=True)
class ChildFailed:
    """The child's work failed; ``reason`` is one line, or a line and a traceback for an unexpected error.
    ``recurring``: every trial would fail the same way (see :mod:`hpsearch.execution.failures`), so the study
    fails at once.

    >>> ChildFailed("nan loss at epoch 1").reason
    'nan loss at epoch 1'
    >>> ChildFailed("No module named 'sklearn'", recurring=True).recurring
    True
    """

    reason: str
    recurring: bool = False


Progress = EpochEnded | CheckpointWritten | BackupWritten | RestartedFromScratch
Result = TrialDone | FinalResult | ChildFailed
Message = Progress | Result
