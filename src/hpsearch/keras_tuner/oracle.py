"""Results of a stored study in Keras Tuner's shapes: its own ``Trial`` objects (``trial_id``,
``hyperparameters.values``, ``score``, ``best_step``, ``status``, ``metrics.get_history(name)``,
``metrics.get_best_value(name)``, ``summary()``), an :class:`Oracle` view (``get_best_trials``, ``get_trial``,
``trials``, ``get_space``) and the progress lines ``search()`` prints.

Example::

    >>> tuner.oracle.get_best_trials(1)[0].score  # doctest: +SKIP
    0.93
    >>> tuner.oracle.get_trial("3").metrics.get_history("val_accuracy")  # doctest: +SKIP
    [MetricObservation(value=[0.81], step=0), MetricObservation(value=[0.9], step=1)]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras_tuner as kt

if TYPE_CHECKING:
    from hpsearch.api import Study

# hpsearch's trial states as Keras Tuner's TrialStatus.
STATUS = {
    "QUEUED": "IDLE",
    "RUNNING": "RUNNING",
    "COMPLETED": "COMPLETED",
    "PRUNED": "STOPPED",
    "FAILED": "FAILED",
}


def kt_objective(objective: Any) -> Any:
    """Keras Tuner's own Objective (or MultiObjective) for a string, an Objective or a list; None ->
    ``val_loss`` (what a Keras Tuner model-based search minimises by default)."""
    from keras_tuner.src.engine import objective as objective_module

    return objective_module.create_objective("val_loss" if objective is None else objective)


def objectives_of(objective: Any) -> list[tuple[str, str]]:
    """``[(name, direction)]`` of a Keras Tuner objective.

    >>> objectives_of(kt_objective(["val_loss", kt.Objective("val_auc", "max")]))
    [('val_loss', 'min'), ('val_auc', 'max')]
    """
    inner = getattr(objective, "objectives", None)
    return [(o.name, o.direction) for o in inner] if inner is not None else [(objective.name, objective.direction)]


def hyperparameters_of(space: dict[str, Any], values: dict[str, Any]) -> Any:
    """A HyperParameters holding ``values`` in the stored ``space``."""
    hp = kt.HyperParameters.from_config({"space": space.get("space", []), "values": {}})
    hp.values.update(values)
    return hp


class Oracle:
    """Keras Tuner's ``tuner.oracle``, read from the study: trials, the best ones, one by id, the space.

    >>> [t.trial_id for t in tuner.oracle.get_best_trials(2)]  # doctest: +SKIP
    ['4', '1']
    """

    def __init__(self, study: Callable[[], Study | None], objective: Any, max_trials: int | None) -> None:
        self._study = study
        self.objective = objective
        self.max_trials = max_trials

    def _trial(self, study: Study, record: Any, space: dict[str, Any]) -> Any:
        trial = kt.engine.trial.Trial(
            hyperparameters=hyperparameters_of(space, dict(record.params)),
            trial_id=str(record.number),
            status=STATUS.get(str(record.state), "INVALID"),
        )
        names = dict(objectives_of(self.objective))
        curve = study.store.metrics(record.id) if record.epochs_done else {}
        for epoch, values in sorted(curve.items()):
            for name, value in values.items():
                if value is None:
                    continue
                if not trial.metrics.exists(name):
                    trial.metrics.register(name, direction=names.get(name))
                trial.metrics.update(name, value, step=epoch - 1)
        trial.score = self._score(record)
        trial.best_step = record.best_epoch - 1 if record.best_epoch else 0
        trial.message = record.error
        return trial

    def _score(self, record: Any) -> float | None:
        """The objective; with several, Keras Tuner's sum (minimised ones added, maximised ones subtracted,
        sign-flipped back to the first objective's direction)."""
        objectives = objectives_of(self.objective)
        if len(objectives) == 1 or not record.objective_values:
            return None if record.objective is None else float(record.objective)
        values = record.objective_values
        if any(v is None for v in values):
            return None
        return float(sum(v if d == "min" else -v for (_, d), v in zip(objectives, values, strict=False)))

    @property
    def trials(self) -> dict[str, Any]:
        """Every trial by id (``"0"``, ``"1"``, ...), as Keras Tuner's ``oracle.trials``."""
        study = self._study()
        if study is None:
            return {}
        space = study.record.space
        return {str(t.number): self._trial(study, t, space) for t in study.trials}

    def get_trial(self, trial_id: str | int) -> Any:
        """One trial by its id."""
        study = self._study()
        if study is None:
            raise KeyError(trial_id)
        return self._trial(study, study.trial(int(trial_id)), study.record.space)

    def get_best_trials(self, num_trials: int = 1) -> list[Any]:
        """The completed trials, best first (ties: the earlier trial)."""
        study = self._study()
        if study is None:
            return []
        space = study.record.space
        done = [t for t in study.trials if t.state == "COMPLETED" and self._score(t) is not None]
        multi = len(objectives_of(self.objective)) > 1
        sign = 1.0 if multi or objectives_of(self.objective)[0][1] == "min" else -1.0
        done.sort(key=lambda t: (sign * (self._score(t) or 0.0), t.number))
        return [self._trial(study, t, space) for t in done[:num_trials]]

    def get_space(self) -> Any:
        """The study's search space as HyperParameters (empty before the first ``search()``)."""
        study = self._study()
        return hyperparameters_of(study.record.space if study else {}, {})


def clock(seconds: float) -> str:
    """Keras Tuner's elapsed-time format.

    >>> clock(3725)
    '01h 02m 05s'
    """
    seconds = round(seconds)
    return f"{seconds // 3600:02d}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"


class Progress:
    """Prints each finished trial as Keras Tuner does (``Trial n Complete [elapsed]``, its objective, the best
    so far, the total elapsed time), polling the study at most once a second."""

    def __init__(self, study: Study, objective: Any, verbose: int) -> None:
        self.study = study
        self.names = objectives_of(objective)
        self.verbose = verbose
        self.started = time.monotonic()
        self.polled = 0.0
        self.seen = {
            t.number
            for t in study.trials
            if t.state in STATUS and STATUS[t.state] in ("COMPLETED", "STOPPED", "FAILED")
        }
        self.best: float | None = None

    def tick(self, force: bool = False) -> None:
        if not self.verbose or (not force and time.monotonic() - self.polled < 1.0):
            return
        self.polled = time.monotonic()
        total = self.study.record.max_trials
        for trial in self.study.trials:
            if trial.number in self.seen or trial.state not in ("COMPLETED", "PRUNED", "FAILED"):
                continue
            self.seen.add(trial.number)
            name, direction = self.names[0]
            print(f"\nTrial {trial.number + 1}/{total} Complete [{clock(trial.duration_seconds or 0.0)}]")
            if trial.state == "FAILED":
                print(f"Trial {trial.number} failed: {(trial.error or '').strip().splitlines()[-1:] or ''}")
            else:
                print(f"{name}: {trial.objective}")
                better = trial.objective is not None and (
                    self.best is None
                    or (trial.objective > self.best if direction == "max" else trial.objective < self.best)
                )
                if better:
                    self.best = trial.objective
            best = self.study.best_trial
            print(f"\nBest {name} So Far: {best.objective if best is not None else None}")
            print(f"Total elapsed time: {clock(time.monotonic() - self.started)}", flush=True)
