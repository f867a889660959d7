"""The worker side of :mod:`hpsearch.keras_tuner`: the hypermodel a tuner's ``search()`` hands to hpsearch.

``search()`` pickles a :class:`SearchHyperModel` (the user's hypermodel plus what ``search()`` was given for
``fit``) with cloudpickle, so a hypermodel, callbacks and custom metrics defined in a notebook or ``__main__``
reach every worker; the generated loader module of the project (:mod:`hpsearch.keras_tuner.project`) unpickles
it in each trial and memory-maps the arrays ``search()`` saved once.

``executions_per_trial``: Keras Tuner trains that many models per trial and scores the trial by the mean over
executions of each execution's best epoch. Here the earlier executions train silently (fresh models, same
starting point) and the last one reports, after each epoch, every metric averaged over the executions that
reached that epoch; the trial's score is the best epoch of that mean curve. The two agree when the executions
peak at the same epoch (monotone curves); otherwise this one is the lower (for a maximised objective), and the
curve stored per epoch is a mean curve rather than a single model's.

Example (what the generated loader module does)::

    >>> hypermodel = load_pickled(Path("my_dir/my_project/hypermodel.pkl"))  # doctest: +SKIP
    >>> model = hypermodel.build(keras_tuner.HyperParameters())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

# Named by the trial's attempt, as its checkpoints are: a worker frozen past its lease whose trial another
# attempt took over writes only its own file, never the one get_best_models loads (the completing attempt's).
BEST_WEIGHTS = "kt-best-a{attempt}.weights.h5"
_BEST_VALUE = "kt-best-a{attempt}.json"  # the file's objective value, read by the next attempt
_COLLISION = re.compile(r"got multiple values for (?:keyword )?argument '(\w+)'")
SPLITS = ("train", "validation")


class SearchHyperModel(kt.HyperModel):
    """The user's hypermodel with ``search()``'s fit arguments, the restricted space and the model-size limit.

    >>> wrapped = SearchHyperModel(build_model, {"batch_size": 32}, executions=2)  # doctest: +SKIP
    >>> wrapped.build(keras_tuner.HyperParameters())  # doctest: +SKIP
    """

    def __init__(
        self,
        hypermodel: Any,
        fit_kwargs: Mapping[str, Any] | None = None,
        *,
        executions: int = 1,
        objective: tuple[str, str] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        max_model_size: int | None = None,
    ) -> None:
        super().__init__()
        self.hypermodel = hypermodel if isinstance(hypermodel, kt.HyperModel) else _FunctionHyperModel(hypermodel)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.executions = executions
        self.objective = objective  # (name, direction) of the first objective: which epoch's weights to keep
        self.hyperparameters = hyperparameters  # a HyperParameters config (Keras Tuner's ``hyperparameters=``)
        self.tune_new_entries = tune_new_entries
        self.allow_new_entries = allow_new_entries
        self.max_model_size = max_model_size

    # --- build -----------------------------------------------------------------------------------------------

    def build(self, hp: Any) -> Any:
        if self.hyperparameters is not None:
            _restrict(hp, self.hyperparameters, self.tune_new_entries, self.allow_new_entries)
        try:
            model = self.hypermodel.build(hp)
        finally:
            if self.hyperparameters is not None:
                hp.__class__ = hp.__class__.__bases__[0]  # back to the class the worker gave
        if self.max_model_size is not None and hasattr(model, "count_params"):
            size = model.count_params()
            if size > self.max_model_size:  # as Keras Tuner: the trial fails, the search goes on
                raise kt.errors.FailedTrialError(
                    f"model has {size} parameters, over max_model_size {self.max_model_size}"
                )
        return model

    # --- fit -------------------------------------------------------------------------------------------------

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the user's fit ``executions`` times (see the module); hpsearch's own callbacks see only the last
        execution, with every metric averaged over the executions."""
        hpsearch_callbacks = list(kwargs.pop("callbacks", None) or [])
        user_callbacks = list(self.fit_kwargs.get("callbacks") or [])
        extra = {k: v for k, v in self.fit_kwargs.items() if k != "callbacks" and k not in kwargs}
        earlier: list[list[dict[str, float]]] = []
        start = _initial_epoch(model)
        stop = next((c.stop for c in hpsearch_callbacks if hasattr(getattr(c, "stop", None), "is_set")), None)
        for execution in range(self.executions):
            last = execution == self.executions - 1
            callbacks = [copy.deepcopy(c) for c in user_callbacks]
            if last:
                target = model
                callbacks += [_Average(earlier), *_best_saver(self.objective, hpsearch_callbacks), *hpsearch_callbacks]
            else:
                target = self._fresh(hp, model, start)
                recorder = _Record(stop)
                callbacks.append(recorder)
                earlier.append(recorder.epochs)
            result = self._call_user_fit(hp, target, args, {**kwargs, **extra, "callbacks": callbacks}, set(extra))
            if not last and stop is not None and stop.is_set():
                break
        return result

    def _fresh(self, hp: Any, model: Any, start: int) -> Any:
        """A new model for an earlier execution: built anew, from the same weights when the trial resumes or
        continues another (Hyperband), fitting silently from the same epoch."""
        fresh = self.build(hp)
        if start:
            fresh.set_weights(model.get_weights())
        fit = type(fresh).fit.__get__(fresh)

        def quiet_fit(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("verbose", 0)
            if start:
                kwargs.setdefault("initial_epoch", start)
            return fit(*args, **kwargs)

        object.__setattr__(fresh, "fit", quiet_fit)
        return fresh

    def _call_user_fit(self, hp: Any, model: Any, args: Sequence[Any], kwargs: dict[str, Any], ours: set[str]) -> Any:
        """The user's fit, where an argument of ``search()`` that the user's fit also sets is dropped (the
        user's fit wins), found from the collision before anything trained."""
        user_fit = self.hypermodel.fit  # not `.fit(`: hpsearch reads this source for fit keywords
        inner = model.fit
        entered = False

        def tracking(*a: Any, **k: Any) -> Any:
            nonlocal entered
            entered = True
            return inner(*a, **k)

        object.__setattr__(model, "fit", tracking)
        try:
            while True:
                try:
                    return user_fit(hp, model, *args, **kwargs)
                except TypeError as exc:
                    clash = _COLLISION.search(str(exc))
                    if entered or clash is None or clash.group(1) not in ours:
                        raise
                    kwargs.pop(clash.group(1))
        finally:
            object.__setattr__(model, "fit", inner)


class _FunctionHyperModel(kt.HyperModel):
    """A ``build(hp)`` function as a HyperModel (Keras Tuner's own wrapper, picklable by cloudpickle)."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        super().__init__()
        self.build_function = build

    def build(self, hp: Any) -> Any:
        return self.build_function(hp)


def _restrict(hp: Any, config: dict[str, Any], tune_new_entries: bool, allow_new_entries: bool) -> None:
    """Keras Tuner's ``hyperparameters=``: its parameters replace the hypermodel's declarations; a parameter it
    does not name is tuned (``tune_new_entries``), fixed at its default, or refused (``allow_new_entries``)."""
    given = kt.HyperParameters.from_config(config)
    for param in given.space:
        if param.name not in hp.values:
            hp._register(param)
    names = {p.name: p for p in given.space}
    base = type(hp)

    class Restricted(base):  # type: ignore[misc, valid-type]
        def _retrieve(self, param: Any) -> Any:
            if param.name in names:  # the given declaration wins, whatever type the hypermodel asks for
                param = names[param.name]
            else:
                if not allow_new_entries and param.name not in self.values:
                    raise RuntimeError(f"`allow_new_entries` is `False`, but found new entry {param.name!r}")
                if not tune_new_entries:
                    param = kt.engine.hyperparameters.Fixed(param.name, param.default, conditions=param.conditions)
            return super()._retrieve(param)

    hp.__class__ = Restricted


def _initial_epoch(model: Any) -> int:
    """The epoch hpsearch resumes this trial's fit from (its ``initial_epoch`` setting; 0 when none)."""
    import inspect

    fit = model.__dict__.get("fit")
    if fit is None:
        return 0
    try:
        added = inspect.getclosurevars(fit).nonlocals.get("added")
    except (TypeError, ValueError):
        return 0
    return int(added.get("initial_epoch", 0)) if isinstance(added, Mapping) else 0


class _Record(keras.callbacks.Callback):
    """An earlier execution's logs per epoch; it stops with the trial."""

    def __init__(self, stop: Any) -> None:
        super().__init__()
        self.stop = stop
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append({k: float(v) for k, v in (logs or {}).items()})

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop is not None and self.stop.is_set():
            self.model.stop_training = True


class _Average(keras.callbacks.Callback):
    """Replaces, in place, each logged value by its mean over the executions that reached this epoch, before
    the callbacks after it (hpsearch's reporter) read the logs."""

    def __init__(self, earlier: list[list[dict[str, float]]]) -> None:
        super().__init__()
        self.earlier = earlier
        self.first_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or not self.earlier:
            return
        if self.first_epoch is None:
            self.first_epoch = epoch
        index = epoch - self.first_epoch
        for name, value in list(logs.items()):
            values = [
                float(value),
                *(run[index][name] for run in self.earlier if index < len(run) and name in run[index]),
            ]
            logs[name] = float(np.mean(values))


def _best_saver(objective: tuple[str, str] | None, hpsearch_callbacks: Sequence[Any]) -> list[Any]:
    """Keras Tuner's SaveBestEpoch: the weights of the trial's best epoch, next to hpsearch's checkpoints (which
    keep the latest epoch, for resuming), so ``get_best_models`` returns the best epoch's model."""
    task = next((c.task for c in hpsearch_callbacks if hasattr(c, "task")), None)
    directory = getattr(task, "checkpoint_dir", None)
    if objective is None or not directory:
        return []
    return [_SaveBest(objective[0], objective[1], Path(directory), getattr(task, "attempt", 1))]


class _SaveBest(keras.callbacks.Callback):
    """Saves the best epoch's weights as ``kt-best-a<attempt>.weights.h5``. A resumed attempt starts from the
    best of the earlier attempts' files (copied to its own name), so its file is the best of the whole trial."""

    def __init__(self, name: str, direction: str, directory: Path, attempt: int) -> None:
        super().__init__()
        self.name, self.sign = name, (1.0 if direction == "max" else -1.0)
        self.directory, self.attempt = directory, attempt
        self.path = directory / BEST_WEIGHTS.format(attempt=attempt)
        self.best = -np.inf

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        earlier = []
        for number in range(1, self.attempt):
            try:
                value = json.loads((self.directory / _BEST_VALUE.format(attempt=number)).read_text())["value"]
            except (OSError, ValueError, KeyError):
                continue
            if (self.directory / BEST_WEIGHTS.format(attempt=number)).is_file():
                earlier.append((self.sign * float(value), number))
        if earlier and max(earlier)[0] > self.best:
            best, number = max(earlier)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.weights.h5")
            shutil.copy2(self.directory / BEST_WEIGHTS.format(attempt=number), temporary)
            os.replace(temporary, self.path)
            self._remember(best)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.name)
        if value is None or not np.isfinite(value) or self.sign * float(value) <= self.best:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.weights.h5")
        self.model.save_weights(temporary)
        os.replace(temporary, self.path)
        self._remember(self.sign * float(value))

    def _remember(self, best: float) -> None:
        self.best = best
        value = self.directory / _BEST_VALUE.format(attempt=self.attempt)
        temporary = value.with_name(f".{value.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"value": self.sign * best}))
        os.replace(temporary, value)


# --- the project's files, as workers read them ---------------------------------------------------------------


def load_pickled(path: Path) -> Any:
    """The hypermodel ``search()`` pickled (cloudpickle) into the project directory."""
    import cloudpickle

    with path.open("rb") as handle:
        return cloudpickle.load(handle)


def open_arrays(directory: Path) -> dict[str, tuple[Any, ...]]:
    """The splits ``search()`` saved (``<split>.x[.<input>].npy``, ``.y.npy``, ``.w.npy``), memory-mapped
    read-only, as hpsearch's data-loader contract wants them: ``{"train": (x, y[, w]), "validation": ...}``.

    >>> open_arrays(Path("my_dir/my_project/data"))["train"][0].shape  # doctest: +SKIP
    (1000, 8)
    """
    splits: dict[str, tuple[Any, ...]] = {}
    for split in SPLITS:
        inputs = {
            p.name[len(split) + 3 : -4]: np.load(p, mmap_mode="r") for p in sorted(directory.glob(f"{split}.x.*.npy"))
        }
        single = directory / f"{split}.x.npy"
        x: Any = np.load(single, mmap_mode="r") if single.exists() else inputs
        y = np.load(directory / f"{split}.y.npy", mmap_mode="r")
        weight = directory / f"{split}.w.npy"
        splits[split] = (x, y, np.load(weight, mmap_mode="r")) if weight.exists() else (x, y)
    return splits


class PickledHyperModel(kt.HyperModel):
    """Base of the generated loader module's ``hypermodel`` class: instantiating it (as hpsearch does with a
    HyperModel class) returns the freshly unpickled :class:`SearchHyperModel` of ``path``."""

    path: Path

    def __new__(cls) -> Any:
        return load_pickled(cls.path)
