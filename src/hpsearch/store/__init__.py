"""The SQL store: typed models, migrations, and every query, split by concern (see repository.py).

Example::

    from hpsearch.store import open_store
    store = open_store("sqlite:///hpsearch.db")
    print([s.name for s in store.studies()])
"""

from __future__ import annotations

from hpsearch.store.db import make_engine, mask_url, require_schema, resolve_url, upgrade
from hpsearch.store.models import StudyState, TrialState
from hpsearch.store.records import (
    ArtifactRecord,
    AttemptRecord,
    ClaimedTrial,
    ClassMetricRecord,
    FinalJobRecord,
    NewArtifact,
    NewFinalJob,
    NewStudy,
    SliceMetricRecord,
    StudyRecord,
    StudySnapshot,
    TrialRecord,
    WorkerRecord,
)
from hpsearch.store.repository import Store
from hpsearch.store.states import TRANSITIONS, TransitionError


def open_store(url: str | None, *, create: bool = False, retry_seconds: float = 0.0) -> Store:
    """Connect to ``url`` (or HPSEARCH_DB, or ./hpsearch.db). ``create`` migrates the schema to this
    version; otherwise the schema must already be there. ``retry_seconds``: see :class:`Store`."""
    engine = make_engine(resolve_url(url))
    if create:
        upgrade(engine)
    else:
        require_schema(engine)
    return Store(engine, retry_seconds=retry_seconds)


__all__ = [
    "TRANSITIONS",
    "ArtifactRecord",
    "AttemptRecord",
    "ClaimedTrial",
    "ClassMetricRecord",
    "FinalJobRecord",
    "NewArtifact",
    "NewFinalJob",
    "NewStudy",
    "SliceMetricRecord",
    "Store",
    "StudyRecord",
    "StudySnapshot",
    "StudyState",
    "TransitionError",
    "TrialRecord",
    "TrialState",
    "WorkerRecord",
    "mask_url",
    "open_store",
    "resolve_url",
]
