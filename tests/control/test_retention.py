"""`hpsearch gc` keeps every checkpoint a resume or a promotion may still read (control/retention.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.control.retention import collect
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, StudyState, TrialState

from ..conftest import write_tiny_study


@pytest.mark.slow
def test_gc_of_a_stopped_hyperband_study_keeps_the_parents_of_pending_promotions(
    store: Store, tmp_path: Path
) -> None:
    """Issue 24: gc on a STOPPED Hyperband study freed the checkpoint of a trial about to be promoted; after
    the resume the promoted trial trained from epoch 0. Hyperband(max_epochs=4, factor=2) first runs 4 trials
    for 1 epoch and promotes 2 of them, so one promoted parent is not the study's best trial (which gc keeps
    anyway)."""
    path = write_tiny_study(tmp_path, algorithm="hyperband", max_trials=100, max_epochs=4, workers=1)
    path.write_text(path.read_text().replace("max_trials = 100\n", "factor = 2\n"))
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record
    coordinator = Coordinator(store, ["tiny"], prefetch=0)
    worker = Worker(store, study="tiny", idle_timeout=0, poll_seconds=0.1)

    def first_rung() -> list:  # type: ignore[type-arg]
        return [t for t in store.trials(study.id) if t.budget_epochs == 1 and t.state == TrialState.COMPLETED]

    while len(first_rung()) < 4:
        assert coordinator.step(store.study_by_id(study.id), target_queued=1)
        worker.run()
    assert not [t for t in store.trials(study.id) if t.parent_trial_id is not None]  # no promotion planned yet

    store.set_study_state(study.id, StudyState.STOPPED)
    collect(store, store.study_by_id(study.id))
    kept = {a.trial_id for a in store.checkpoints(study.id)}
    assert {t.id for t in first_rung()} <= kept  # each may still be promoted
    for artifact in store.checkpoints(study.id):
        assert Path(artifact.uri).is_file()

    store.set_study_state(study.id, StudyState.RUNNING)  # resume
    coordinator = Coordinator(store, ["tiny"], prefetch=0)
    while not [t for t in store.trials(study.id) if t.parent_trial_id is not None and t.state == "COMPLETED"]:
        assert coordinator.step(store.study_by_id(study.id), target_queued=2)
        worker.run()
    children = [t for t in store.trials(study.id) if t.parent_trial_id is not None]
    assert len(children) == 2
    for child in children:
        if child.state != TrialState.COMPLETED:
            continue
        assert child.initial_epoch == 1
        assert sorted(store.metrics(child.id)) == [2]  # it continued from the parent's epoch 1
        (attempt,) = store.attempts(child.id)
        assert attempt.start_epoch == 1
