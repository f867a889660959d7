"""What a study file's user code declares: import the hypermodel, load and check the data, and discover the
search space by building the hypermodel with every conditional branch active.

This is the execution side of study creation (it imports keras through the user's code); the control side,
``control/studies.py``, turns what is found here into the study row without touching keras.
"""

from __future__ import annotations

import difflib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.errors import UsageError, UserCodeError
from hpsearch.execution.failures import first_line, recurs_in_every_trial
from hpsearch.execution.hypermodels import check_fit_section, study_hypermodel
from hpsearch.execution.loading import Dataset, check_fits, check_model, hypermodel_label, keras_inputs, load_dataset
from hpsearch.limits import first_too_long
from hpsearch.space import SearchSpace, override_config
from hpsearch.spec import StudySpec

# A metric the trial's child logs itself when an objective names it (training.NUM_PARAMS; that module is heavy).
NUM_PARAMS = "num_params"
# Keras Tuner stops rebuilding after this many builds too: a space whose scopes never all activate ends.
_MAX_DISCOVERY_BUILDS = 64
# How long the hypermodel's side of discovery may take (importing it, every build, the checks): a hypermodel
# that never returns must not hang `study create`. Generous: discovery builds a model a few dozen times at
# most and fits nothing. The data loader is not bounded: its time is the data's size, not a bug.
DISCOVERY_TIMEOUT_ENV = "HPSEARCH_DISCOVERY_TIMEOUT"
DEFAULT_DISCOVERY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Discovered:
    """A study file's spec (with AutoML's seed trials added) and the space its hypermodel declares."""

    spec: StudySpec
    space: dict[str, Any]
    base_dir: Path


def discover(spec: StudySpec, path: Path) -> Discovered:
    """Check the hypermodel and the data loader and discover the space of the study file at ``path``. The
    hypermodel's part is bounded by :func:`discovery_timeout` (see :func:`time_limit`).

    >>> from hpsearch.spec import load_spec
    >>> found = discover(load_spec("studies/mnist_mlp.toml"), Path("studies/mnist_mlp.toml"))  # doctest: +SKIP
    >>> [p["name"] for p in found.space["space"]]  # doctest: +SKIP
    ['units', 'dropout', 'lr']
    """
    base_dir = path.resolve().parent
    limit = discovery_timeout()
    dataset = load_dataset(spec.study.data, base_dir)
    import keras_tuner  # noqa: F401  # imported before the clock starts: the limit times the user's code, not ours

    with time_limit(limit, hypermodel_label(spec)):
        return _discover(spec, path, base_dir, dataset)


def _discover(spec: StudySpec, path: Path, base_dir: Path, dataset: Dataset) -> Discovered:
    """:func:`discover` once the data is loaded: the part under the time limit."""
    hypermodel = study_hypermodel(spec, base_dir, dataset)
    check_fit_section(spec, hypermodel, str(path))

    checked_objectives = False

    def check(model: object, where: str) -> None:
        nonlocal checked_objectives
        check_model(model, where)
        if spec.automl is None:  # AutoML models adapt their inputs to this data by construction
            check_fits(model, dataset, spec.study.data)
            if not checked_objectives and not spec.fit.callbacks and not _fits_itself(hypermodel):
                checked_objectives = True  # once: the compiled metrics rarely depend on the parameters
                check_objectives(model, dataset, [o.name for o in spec.study.objectives], str(path))

    space = discover_space(hypermodel, hypermodel_label(spec), check=check)
    if spec.space:
        space = override_config(space, spec.space, str(path))
    if spec.automl is not None and spec.automl.task is not None and spec.automl.seed_initial_trials:
        from hpsearch.execution.automl import fit_initial_trials, initial_hps

        seeds = fit_initial_trials(initial_hps(spec.automl.task), SearchSpace(space))
        search = spec.search.model_copy(update={"initial_trials": [*spec.search.initial_trials, *seeds]})
        spec = spec.model_copy(update={"search": search})
    return Discovered(spec, space, base_dir)


def discovery_timeout() -> float | None:
    """Seconds the hypermodel's discovery may take: ``HPSEARCH_DISCOVERY_TIMEOUT`` (0: no limit), else 120.
    Example: ``HPSEARCH_DISCOVERY_TIMEOUT=600 hpsearch study create big.toml``."""
    raw = os.environ.get(DISCOVERY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_DISCOVERY_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(DISCOVERY_TIMEOUT_ENV, f"must be a number of seconds, 0 for no limit (got {raw!r})")
    return seconds or None


class _OutOfTime(BaseException):
    """Raised by the alarm. A BaseException, so that neither the user's ``except Exception`` nor discovery's
    own handlers (which turn a build's exceptions into errors) mistake it for the hypermodel's failure."""


@contextmanager
def time_limit(seconds: float | None, where: str) -> Iterator[None]:
    """Interrupt the body after ``seconds`` with a one-line UserCodeError naming ``where`` and the limit.

    Why SIGALRM in this process (not a child process to kill): discovery's results and errors stay plain
    objects, and the caller's loaded keras is never forked. The alarm interrupts Python code and the waits
    that run signal handlers (sleep, locks, events, sockets); it needs the main thread, so elsewhere (the
    Python API called from a thread) the body runs unbounded. A shorter timer already set (pytest-timeout,
    the caller's own) is left to fire first; a longer one is re-armed with what remains of it afterwards.
    """
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if (
        seconds is None
        or threading.current_thread() is not threading.main_thread()
        or (outer_delay and outer_delay <= seconds)
    ):
        yield
        return
    armed = True

    def on_alarm(_signum: int, _frame: object) -> None:
        if armed:
            raise _OutOfTime

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            yield
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _OutOfTime:
        raise UserCodeError(
            where,
            f"did not return within {seconds:g} s while hpsearch discovered the search space "
            f"(set {DISCOVERY_TIMEOUT_ENV} to more seconds, or 0 for no limit)",
        ) from None
    finally:
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_delay:
            remaining = max(outer_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


def _fits_itself(hypermodel: Any) -> bool:
    """A HyperModel with its own ``fit`` may log anything: its objective is only known once it ran."""
    import keras_tuner as kt

    return getattr(type(hypermodel), "fit", None) is not kt.HyperModel.fit


def logged_metrics(model: Any, dataset: Dataset, where: str) -> set[str] | None:
    """The names ``fit`` will log for a compiled ``model`` with validation data (``loss``, each compiled
    metric, and their ``val_`` twins), found by evaluating two training rows; None if that cannot run here.
    A loss that does not fit the labels is refused now rather than in every trial."""
    train = dataset["train"]
    x = {k: v[:2] for k, v in train.x.items()} if isinstance(train.x, dict) else train.x[:2]
    try:
        logs = model.test_on_batch(keras_inputs(x), train.y[:2], return_dict=True)
    except Exception as exc:  # else nothing to decide here: the trials report it, with its traceback
        if recurs_in_every_trial(exc):
            raise UserCodeError(where, f"the model cannot be evaluated on the data: {first_line(str(exc))}") from None
        return None
    names = {str(name) for name in logs}
    return names | {f"val_{name}" for name in names} | {"learning_rate", NUM_PARAMS}


def check_objectives(model: Any, dataset: Dataset, objectives: list[str], where: str) -> None:
    """Refuse an objective the model will never log (e.g. ``val_acc`` when it logs ``val_accuracy``): every
    trial would train and then fail on it."""
    logged = logged_metrics(model, dataset, where)
    if logged is None:
        return
    for name in objectives:
        if name not in logged:
            shown = sorted(n for n in logged if n not in ("learning_rate", NUM_PARAMS))
            close = difflib.get_close_matches(name, shown, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserCodeError(
                f"{where}: study.objective", f"{name!r} is not logged by the model (it logs {shown}){hint}"
            )


class _Conflict(Exception):
    """A hypermodel declared one parameter name with two types."""


def discover_space(hypermodel: Any, where: str, check: Callable[[Any, str], None] | None = None) -> dict[str, Any]:
    """Build ``hypermodel`` until every conditional scope has been active once, as Keras Tuner does,
    and return the space as ``HyperParameters.get_config()``. Imports keras_tuner."""
    import copy

    import keras_tuner as kt

    class Checked(kt.HyperParameters):
        """Refuses one name declared with two types: Keras Tuner silently returns the first one's value."""

        def _retrieve(self, param: Any) -> Any:
            for declared in self._hps.get(param.name, ()):
                if type(declared) is not type(param):
                    raise _Conflict(
                        f"declares the parameter {param.name!r} twice, as "
                        f"{type(declared).__name__} and as {type(param).__name__}"
                    )
            return super()._retrieve(param)

        def copy(self) -> Any:
            return Checked.from_config(self.get_config())

    space = Checked()
    builds = 0
    infeasible: list[str] = []

    def build(hp: Any) -> None:
        nonlocal builds
        builds += 1
        try:
            model = hypermodel.build(hp)
        except _Conflict as exc:
            raise UserCodeError(where, str(exc)) from exc
        except kt.errors.FailedTrialError as exc:
            # Keras Tuner's "this configuration cannot be trained" (e.g. an oversized AutoKeras model): the
            # parameters it declared on the way still belong to the space.
            infeasible.append(str(exc))
            model = None
        except (Exception, SystemExit) as exc:  # SystemExit too: creation must not end silently with exit 0
            raise UserCodeError(where, f"building the model raised {type(exc).__name__}: {exc}") from exc
        if check is not None and model is not None:
            check(model, where)
        known = {p.name for p in space.space}
        space.merge([p for p in hp.space if p.name not in known])

    # Keras Tuner's loop: rebuild until every conditional scope has been active once.
    never_active: list[Any] = []
    once_active: list[Any] = []
    hp = Checked()
    while True:
        build(hp)
        for conditions in hp.active_scopes:
            if conditions not in once_active:
                once_active.append(copy.deepcopy(conditions))
            if conditions in never_active:
                never_active.remove(conditions)
        for conditions in hp.inactive_scopes:
            if conditions not in once_active and conditions not in never_active:
                never_active.append(copy.deepcopy(conditions))
        if not never_active:
            break
        hp = space.copy()
        for condition in never_active.pop(0):
            hp.values[condition.name] = condition.values[0]
        hp.ensure_active_values()
    # Beyond Keras Tuner: the docs' `if hp.Boolean("dropout"): ... hp.Float("rate")` and
    # `for i in range(hp.Int("layers", 1, 3))` hide parameters from the loop above until a trial takes that
    # path; one build per choice and one at each integer's maximum find them up front.
    hp_types = kt.engine.hyperparameters
    for param in list(space.space):
        alternatives: tuple[Any, ...] = ()
        if isinstance(param, hp_types.Boolean):
            alternatives = (False, True)
        elif isinstance(param, hp_types.Choice):
            alternatives = tuple(param.values)
        elif isinstance(param, hp_types.Int):
            alternatives = (param.max_value,)
        for value in alternatives:
            if builds >= _MAX_DISCOVERY_BUILDS:
                break
            hp = space.copy()
            hp.values[param.name] = value
            hp.ensure_active_values()
            build(hp)
    if len(infeasible) == builds:
        raise UserCodeError(where, f"no configuration could be built: {infeasible[-1]}")
    config = space.get_config()
    too_long = first_too_long((entry["config"]["name"] for entry in config["space"]), "parameter")
    if too_long is not None:  # PostgreSQL would refuse it at the first trial's INSERT; SQLite would not
        raise UserCodeError(where, too_long)
    return {"space": config["space"], "values": {}}
