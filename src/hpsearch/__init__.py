"""hpsearch: hyperparameter search and AutoML for Keras 3, with a SQL store, a coordinator and workers."""

from __future__ import annotations

from hpsearch.errors import HpsearchError, SpecError, StoreError, UsageError, UserCodeError
from hpsearch.spec import StudySpec, load_spec
from hpsearch.store import Store, StudyState, TrialState, open_store

__version__ = "0.1.0"

__all__ = [
    "HpsearchError",
    "SpecError",
    "Store",
    "StoreError",
    "StudySpec",
    "StudyState",
    "TrialState",
    "UsageError",
    "UserCodeError",
    "load_spec",
    "open_store",
]
