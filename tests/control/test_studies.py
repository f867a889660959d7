"""Creating a study again from its file: the same study, also when it was stored by an earlier version."""

from __future__ import annotations

import re
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


@pytest.mark.slow
def test_two_databases_sharing_one_artifact_root_keep_their_own_checkpoints(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: the same study name in two databases with the default (shared) artifact root; the second
    run must not overwrite the first one's recorded checkpoints."""
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.execution.training import sha256_of
    from hpsearch.execution.worker import Worker
    from hpsearch.store import open_store

    monkeypatch.chdir(tmp_path)  # both use the default root, ./hpsearch-artifacts
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}", create=True)
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    recorded = []
    for each, seed in ((store, 7), (other, 8)):  # another seed: other weights, so an overwrite would show
        path.write_text(re.sub(r"seed = \d+", f"seed = {seed}", path.read_text()))
        study = create_study(path, store=each).record
        Coordinator(each, [study.name]).step(study, target_queued=1)
        assert Worker(each, study=study.name, idle_timeout=0, poll_seconds=0.1).run() == 1
        (checkpoint,) = each.checkpoints(study.id)
        recorded.append((study.artifact_root, checkpoint))
    other.engine.dispose()
    (first_root, first), (second_root, second) = recorded
    assert first_root != second_root and first.uri != second.uri
    for root, checkpoint in recorded:
        assert Path(root).parent == (tmp_path / "hpsearch-artifacts").resolve()
        assert sha256_of(Path(checkpoint.uri)) == checkpoint.sha256  # nobody wrote over it


def test_a_study_that_exists_already_leaves_no_directory_behind(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path)
    root = tmp_path / "artifacts"
    create_study(path, store=store, artifacts=root)
    create_study(path, store=store, artifacts=root)
    assert [p.name for p in root.iterdir()] == [Path(store.study("tiny").artifact_root).name]
