"""Keras Tuner's API on hpsearch: change one import, keep the notebook.

``import hpsearch.keras_tuner as kt`` gives Keras Tuner's own ``HyperParameters``, ``HyperModel``,
``Objective`` and ``errors``, and tuners with Keras Tuner's arguments (``RandomSearch``, ``GridSearch``,
``BayesianOptimization``, ``Hyperband``, and hpsearch's ``TPE``, ``ASHA``, ``BOHB``) whose ``search()`` runs a
study in hpsearch's database with worker processes: resumable, shared by many machines, reportable
(``hpsearch status``, ``hpsearch report``, ``hpsearch promote``).

>>> import hpsearch.keras_tuner as kt
>>> def build_model(hp): ...  # doctest: +SKIP
>>> tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=10,
...                         directory="runs", project_name="mlp")  # doctest: +SKIP
>>> tuner.search(x, y, epochs=3, validation_split=0.2)  # doctest: +SKIP
>>> tuner.get_best_models(1)[0]  # doctest: +SKIP
"""

from __future__ import annotations

from keras_tuner import HyperModel, HyperParameters, Objective, errors

from hpsearch.keras_tuner.tuner import Tuner
from hpsearch.keras_tuner.tuners import (
    ASHA,
    BOHB,
    TPE,
    BayesianOptimization,
    GridSearch,
    Hyperband,
    RandomSearch,
    SklearnTuner,
)

__all__ = [
    "ASHA",
    "BOHB",
    "TPE",
    "BayesianOptimization",
    "GridSearch",
    "HyperModel",
    "HyperParameters",
    "Hyperband",
    "Objective",
    "RandomSearch",
    "SklearnTuner",
    "Tuner",
    "errors",
]
