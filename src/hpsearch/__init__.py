"""hpsearch: hyperparameter search and AutoML for Keras 3, with a SQL store, a coordinator and workers.

The public API is this module's names:

>>> import hpsearch
>>> study = hpsearch.create_study("studies/mnist_mlp.toml")  # doctest: +SKIP
>>> study.run(workers=2)  # doctest: +SKIP
>>> study.best_trial.params  # doctest: +SKIP

Keras Tuner code runs on it through :mod:`hpsearch.keras_tuner`; everything below (``store``, ``control``,
``execution``, ``analysis``, ``strategies``) is the implementation, whose boundaries docs/architecture.md draws.
"""

from __future__ import annotations

from hpsearch.api import Study, create_study, load_study
from hpsearch.errors import HpsearchError, SpecError, StoreError, UsageError, UserCodeError
from hpsearch.spec import StudySpec, load_spec, validate_spec
from hpsearch.store import StudyState, TrialState

__version__ = "0.1.0"

__all__ = [
    "HpsearchError",
    "SpecError",
    "StoreError",
    "Study",
    "StudySpec",
    "StudyState",
    "TrialState",
    "UsageError",
    "UserCodeError",
    "create_study",
    "load_spec",
    "load_study",
    "validate_spec",
]
