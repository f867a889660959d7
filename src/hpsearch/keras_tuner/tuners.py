"""The tuners: Keras Tuner's ``RandomSearch``, ``GridSearch``, ``BayesianOptimization`` and ``Hyperband``, and
hpsearch's ``TPE``, ``ASHA`` and ``BOHB`` with the same interface. ``SklearnTuner`` is refused.

>>> tuner = Hyperband(build_model, objective="val_accuracy", max_epochs=9, factor=3,
...                   directory="runs", project_name="hb")  # doctest: +SKIP
>>> tuner.search(x, y, validation_split=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

from hpsearch.errors import UsageError
from hpsearch.keras_tuner.tuner import Tuner


class RandomSearch(Tuner):
    """Keras Tuner's RandomSearch (``max_trials`` defaults to 10).

    >>> RandomSearch(build_model, objective="val_accuracy", max_trials=5)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "random"


class GridSearch(Tuner):
    """Every combination of the space (continuous ranges: their step, else 10 points), at most ``max_trials``.

    >>> GridSearch(build_model, objective="val_loss")  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "grid"
    default_max_trials: ClassVar[int | None] = None


class BayesianOptimization(Tuner):
    """Gaussian-process Bayesian optimisation (Optuna's GP sampler); ``num_initial_points`` random trials
    first (default: hpsearch's 10); ``alpha`` and ``beta`` are accepted and ignored.

    >>> BayesianOptimization(build_model, objective="val_accuracy", max_trials=20,
    ...                      num_initial_points=4)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "bayesian"

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        initial = options.get("num_initial_points")
        return {"n_startup_trials": int(initial)} if initial else {}


class TPE(BayesianOptimization):
    """Optuna's TPE sampler (``num_initial_points`` random trials first, default 10).

    >>> TPE(build_model, objective="val_loss", max_trials=50)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "tpe"


class Hyperband(Tuner):
    """Hyperband (``max_epochs``, ``factor``, ``hyperband_iterations``, as Keras Tuner): brackets of successive
    halving, a promoted trial continuing from its parent's checkpoint. ``search(epochs=...)`` is ignored.

    >>> Hyperband(build_model, objective="val_accuracy", max_epochs=27, factor=3)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "hyperband"
    default_max_trials: ClassVar[int | None] = None

    def __init__(
        self,
        hypermodel: Any = None,
        objective: Any = None,
        max_epochs: int = 100,
        factor: int = 3,
        hyperband_iterations: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            hypermodel,
            objective,
            max_epochs=max_epochs,
            factor=factor,
            hyperband_iterations=hyperband_iterations,
            **kwargs,
        )

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "factor": int(options.get("factor", 3)),
            "hyperband_iterations": int(options.get("hyperband_iterations", 1)),
        }

    def _max_epochs(self, epochs: int | None) -> int:
        return int(self.options.get("max_epochs", 100))


class BOHB(Hyperband):
    """Hyperband with TPE choosing each bracket's configurations (BOHB).

    >>> BOHB(build_model, objective="val_loss", max_epochs=27)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "bohb"


class ASHA(Tuner):
    """Asynchronous successive halving: ``max_trials`` configurations, each promoted by ``factor`` from
    ``min_epochs`` up to ``max_epochs`` while workers never wait for a rung to fill.

    >>> ASHA(build_model, objective="val_accuracy", max_trials=30, max_epochs=27, factor=3)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "asha"

    def __init__(
        self,
        hypermodel: Any = None,
        objective: Any = None,
        max_epochs: int = 100,
        factor: int = 3,
        min_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(hypermodel, objective, max_epochs=max_epochs, factor=factor, min_epochs=min_epochs, **kwargs)

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"factor": int(options.get("factor", 3)), "min_epochs": int(options.get("min_epochs", 1))}

    def _max_epochs(self, epochs: int | None) -> int:
        return int(self.options.get("max_epochs", 100))


class SklearnTuner:
    """Not supported: hpsearch tunes Keras models. Tune scikit-learn models with Optuna or scikit-learn's own
    search (``HalvingRandomSearchCV``).

    >>> SklearnTuner()  # doctest: +SKIP
    Traceback (most recent call last):
    hpsearch.errors.UsageError: SklearnTuner: is not supported ...
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UsageError(
            "SklearnTuner",
            "is not supported (hpsearch tunes Keras models); use optuna or sklearn's HalvingRandomSearchCV",
        )
