"""Creating a study again from its file: the same study, also when it was stored by an earlier version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from hpsearch.api import create_study
from hpsearch.errors import UsageError
from hpsearch.store import Store
from hpsearch.store.models import Study

from ..conftest import write_tiny_study


def test_a_spec_stored_before_fields_were_added_is_the_same_study(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path)
    study, created = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    assert created
    older = {k: v for k, v in study.spec.items() if k != "promote"}  # as stored before [promote] existed
    older["search"] = {k: v for k, v in older["search"].items() if k not in ("cv_folds", "cv_repeats")}
    with store.session() as session:
        session.execute(update(Study).where(Study.id == study.id).values(spec=older))

    again, created = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    assert not created and again.id == study.id

    path.write_text(path.read_text().replace("max_trials = 4", "max_trials = 5"))
    with pytest.raises(UsageError, match="exists with a different study file"):
        create_study(path, store=store, artifacts=tmp_path / "artifacts")


def _created(study: Any) -> tuple[Any, bool]:
    """The stored row of a study handle and whether create_study inserted it."""
    return study.record, study.created
