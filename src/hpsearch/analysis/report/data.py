"""What the report shows, read from the store once into plain frozen dataclasses.

This is the only module of the report that talks to the store: :func:`load_report_data` reads the study, its
trials, objective curves, attempts, workers and newest final job, and the figures and the page work on the
:class:`ReportData` it returns (no SQL, no ORM rows, no second look at a database that may have moved on).

Example::

    >>> data = load_report_data(store, "mnist_mlp")
    >>> [t.number for t in data.completed][:3]
    [0, 1, 2]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from hpsearch.space import Param, SearchSpace, Value
from hpsearch.store import Store, TrialState
from hpsearch.store.models import utcnow

R = TypeVar("R")


def _copy(cls: type[R], row: Any) -> R:
    """The dataclass ``cls`` filled from the attributes of the same names on ``row`` (an ORM row or a record)."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class StudyInfo:
    """The study as the report describes it. Example: ``data.study.objective_name`` is ``"val_accuracy"``."""

    id: int
    name: str
    state: str
    message: str | None
    objective_name: str
    direction: str
    objectives: list[dict[str, str]] | None
    algorithm: str
    max_trials: int
    max_epochs: int
    space: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class TrialInfo:
    """One trial. Example: ``data.trials[0].params`` is ``{"lr": 0.01, "act": "relu"}``."""

    id: int
    number: int
    state: str
    params: dict[str, Any]
    objective: float | None
    objective_values: list[float | None] | None  # every objective's value (multi-objective studies)
    best_epoch: int | None
    epochs_done: int
    budget_epochs: int
    initial_epoch: int
    parent_trial_id: int | None
    bracket: int | None
    rung: int | None
    worker_id: int | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


@dataclass(frozen=True)
class AttemptInfo:
    """One run of a trial by one worker. Example: ``data.attempts[0].outcome`` is ``"COMPLETED"``."""

    trial_id: int
    attempt: int
    worker_id: int | None
    start_epoch: int
    outcome: str | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker that ran a trial of the study. Example: ``data.workers[1].name`` is ``"node-1-0"``."""

    id: int
    name: str
    gpu: str | None


@dataclass(frozen=True)
class ClassRow:
    """Per-class test metrics of the final model. Example: ``data.final.classes[0].f1`` is ``0.83``."""

    class_label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SliceRow:
    """Binary-classifier test metrics in one data slice. Example: ``data.final.slices[0].slice`` is ``"all"``."""

    slice: str
    slice_value: str
    threshold: float
    count: int
    accuracy: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    auc: float | None


@dataclass(frozen=True)
class ExportFile:
    """A file the final job exported. Example: ``data.final.exports[0].kind`` is ``"keras"``."""

    kind: str
    uri: str
    sha256: str


@dataclass(frozen=True)
class FinalModel:
    """The newest completed final job (``hpsearch promote``) or, when none completed, the newest one (its
    evaluation then left empty). Example: ``data.final.state`` is ``"COMPLETED"``."""

    number: int
    state: str
    trial_number: int | None
    train_on: str
    epochs_done: int
    best_epoch: int | None
    objective: float | None
    params: dict[str, Any]
    test_metrics: dict[str, Any] | None
    confusion_matrix: dict[str, Any] | None
    classes: tuple[ClassRow, ...] = ()
    slices: tuple[SliceRow, ...] = ()
    exports: tuple[ExportFile, ...] = ()


@dataclass(frozen=True)
class Axis:
    """One parameter as the figures show it: numeric (optionally log-scaled, optionally integer: ticks on whole
    numbers only) or categorical.

    Example: ``Axis("lr", numeric=True, log=True)``; ``Axis("units", numeric=True, integer=True)``;
    ``Axis("act", numeric=False, categories=("relu", "tanh"))``.
    """

    name: str
    numeric: bool
    log: bool = False
    categories: tuple[Value, ...] = ()
    integer: bool = False


_TRIAL_COLUMNS = tuple(f.name for f in fields(TrialInfo))
_ATTEMPT_COLUMNS = tuple(f.name for f in fields(AttemptInfo))


@dataclass(frozen=True)
class ReportData:
    """One consistent snapshot of a study, everything the report shows. Example: ``data.best.number``."""

    study: StudyInfo
    trials: list[TrialInfo]
    curves: dict[int, dict[int, float]]  # trial id -> epoch -> value of the (first) objective metric
    attempts: list[AttemptInfo]
    workers: dict[int, WorkerInfo]
    counts: dict[str, int]
    best: TrialInfo | None
    space: SearchSpace
    axes: list[Axis]
    final: FinalModel | None
    now: datetime

    # Cached (each figure asks; ``dataclasses.replace`` makes a new object, with its own cache).
    @cached_property
    def by_id(self) -> dict[int, TrialInfo]:
        """Trials by database id (parents of promoted trials are referred to by id)."""
        return {t.id: t for t in self.trials}

    @cached_property
    def completed(self) -> list[TrialInfo]:
        """Completed trials with an objective, by number."""
        return [t for t in self.trials if t.state == TrialState.COMPLETED and t.objective is not None]

    @cached_property
    def multi_fidelity(self) -> bool:
        """Whether trials ran in rungs (Hyperband, ASHA)."""
        return any(t.rung is not None for t in self.trials)

    @property
    def maximize(self) -> bool:
        """Whether a larger (first) objective is better."""
        return self.study.direction == "max"


def load_report_data(store: Store, study_name: str) -> ReportData:
    """Everything the report of ``study_name`` shows, read now.

    Example::

        >>> load_report_data(store, "mnist_mlp").counts["COMPLETED"]
        12
    """
    study = store.study(study_name)
    # One transaction: a consistent view of a study that is still running (curves hold finite values only),
    # the store's one definition of "best" included. Only the columns shown, as tuples: building records
    # field by field took most of a second at 10,000 trials.
    rows = store.snapshot_rows(study, _TRIAL_COLUMNS, _ATTEMPT_COLUMNS)
    curves: dict[int, dict[int, float]] = {}
    for trial_id, epoch, value in rows.curves:
        curves.setdefault(trial_id, {})[epoch] = value
    space = SearchSpace(study.space)
    infos = [TrialInfo(*row) for row in rows.trials]
    states = Counter(t.state for t in infos)
    return ReportData(
        study=_copy(StudyInfo, study),
        trials=infos,
        curves=curves,
        attempts=[AttemptInfo(*row) for row in rows.attempts],
        workers={i: _copy(WorkerInfo, w) for i, w in rows.workers.items()},
        counts={state.value: states[state.value] for state in TrialState},
        best=next((t for t in infos if t.id == rows.best_id), None),
        space=space,
        axes=axes(space.params, infos),
        final=_final_model(store, study.id),
        now=utcnow(),
    )


def _final_model(store: Store, study_id: int) -> FinalModel | None:
    jobs = store.final_jobs(study_id)
    completed = [job for job in jobs if job.state == TrialState.COMPLETED]
    if not completed:  # the newest job, to say how far it got; nothing evaluated yet
        return _final(jobs[-1], None, (), (), ()) if jobs else None
    job = completed[-1]
    classes, slices = store.final_evaluation(job.id)
    return _final(
        job,
        store.trial_by_id(job.trial_id).number,
        tuple(_copy(ClassRow, c) for c in classes),
        tuple(_copy(SliceRow, s) for s in slices),
        tuple(_copy(ExportFile, a) for a in store.final_artifacts(job.id)),
    )


def _final(
    job: Any,
    trial_number: int | None,
    classes: tuple[ClassRow, ...],
    slices: tuple[SliceRow, ...],
    exports: tuple[ExportFile, ...],
) -> FinalModel:
    return FinalModel(
        number=job.number,
        state=job.state,
        trial_number=trial_number,
        train_on=job.train_on,
        epochs_done=job.epochs_done,
        best_epoch=job.best_epoch,
        objective=job.objective,
        params=job.params,
        test_metrics=job.test_metrics,
        confusion_matrix=job.confusion_matrix,
        classes=classes,
        slices=slices,
        exports=exports,
    )


def class_label_names(confusion: Mapping[str, Any] | None) -> dict[str, str]:
    """Each class label of a final job's evaluation (the class index, as stored) -> its name, from the
    confusion matrix's JSON: its "class_names" are there when the data loader named its classes (the loader's
    ``class_names``); empty otherwise, and the labels are shown as they are.

    Example: ``class_label_names({"labels": ["0", "1"], "class_names": ["died", "survived"], ...})`` is
    ``{"0": "died", "1": "survived"}``.
    """
    confusion = confusion or {}
    names, labels = confusion.get("class_names") or [], confusion.get("labels") or []
    return {str(label): str(name) for label, name in zip(labels, names, strict=False)}


def axes(params: Sequence[Param], trials: Sequence[TrialInfo]) -> list[Axis]:
    """The parameters that vary, in declaration order; parameters only the trials know (declared in a
    HyperModel's fit and not yet in the space) follow, their kind guessed from their values.

    Example: ``axes(SearchSpace(study.space).params, trials)`` -> ``[Axis("lr", numeric=True, log=True), ...]``.
    """
    declared = {p.name: p for p in params}
    names = list(declared)
    for trial in trials:
        names += [name for name in trial.params if name not in names]
    result = []
    for name in names:
        values = [t.params[name] for t in trials if name in t.params]
        param = declared.get(name)
        if param is not None and param.kind == "fixed":
            continue
        if len({repr(v) for v in values}) < 2 and param is None:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if param is not None:
            numeric = param.kind in ("int", "float") and numeric
        if numeric:
            # Declared "int", or (known only from the trials) every value an int.
            integer = param.kind == "int" if param is not None else all(isinstance(v, int) for v in values)
            result.append(Axis(name, numeric=True, log=bool(param and param.log), integer=integer))
            continue
        known: list[Value] = []
        if param is not None and param.kind in ("choice", "boolean"):
            known = list(param.grid_values())
        known += [v for v in dict.fromkeys(values) if v not in known]
        result.append(Axis(name, numeric=False, categories=tuple(known)))
    return result
