"""K-fold studies: a trial's metrics are fold means with their standard deviations; promotion repeats the
protocol on a fresh partition for the final estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsearch.api import create_study, run_final_job_here
from hpsearch.control.coordinator import Coordinator
from hpsearch.control.promotion import plan_final_job
from hpsearch.errors import SpecError
from hpsearch.execution.training import fold_splits
from hpsearch.execution.worker import Worker
from hpsearch.spec import load_spec
from hpsearch.store import Store, TrialState

from ..conftest import write_tiny_study


def test_every_example_is_held_out_once_per_repeat_and_repeats_reshuffle() -> None:
    y = np.array([0] * 30 + [1] * 15)
    splits = fold_splits(y, folds=3, repeats=2, seed=4)
    assert len(splits) == 6
    for repeat in (splits[:3], splits[3:]):
        held = np.sort(np.concatenate([h for _, h in repeat]))
        assert held.tolist() == list(range(45))
        for train, held_out in repeat:
            assert not set(train) & set(held_out)
            assert np.bincount(y[held_out]).tolist() == [10, 5]  # stratified
    assert splits[0][1].tolist() != splits[3][1].tolist()


def test_regression_targets_are_split_without_stratification() -> None:
    splits = fold_splits(np.linspace(0, 1, 10), folds=5, repeats=1, seed=0)
    assert sorted(len(h) for _, h in splits) == [2] * 5


def test_cv_folds_do_not_combine_with_multi_fidelity_search(tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, algorithm="hyperband")
    path.write_text(path.read_text().replace("max_trials = 4\n", "cv_folds = 3\n"))
    with pytest.raises(SpecError, match="cv_folds does not combine with 'hyperband'"):
        load_spec(path)


@pytest.mark.slow
def test_a_k_fold_study_reports_fold_means_and_the_final_estimate(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=2)
    path.write_text(path.read_text().replace("max_epochs = 2\n", "max_epochs = 2\ncv_folds = 3\ncv_repeats = 2\n"))
    study, _ = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    Coordinator(store, [study.name]).step(study, target_queued=1)
    assert Worker(store, study=study.name, idle_timeout=0, poll_seconds=0.1).run() == 1
    trial = store.trials(study.id)[0]
    assert trial.state == TrialState.COMPLETED, trial.error
    curve = store.metrics(trial.id)
    assert list(curve) == [1, 2]
    assert {"val_accuracy", "val_accuracy_std", "loss", "loss_std"} <= set(curve[2])
    assert 0 < (curve[2]["val_accuracy_std"] or 0) < 0.5  # six different models
    assert trial.objective == max(curve[e]["val_accuracy"] for e in curve)
    assert not store.checkpoints(study.id)  # K models have no single checkpoint to resume from

    job = run_final_job_here(store, store.create_final_job(plan_final_job(store, study))[0])
    assert job.state == TrialState.COMPLETED, job.error
    metrics = job.test_metrics or {}
    assert {"accuracy", "cv_val_accuracy", "cv_val_accuracy_std"} <= set(metrics)
    assert metrics["cv_val_accuracy"] != pytest.approx(curve[trial.best_epoch]["val_accuracy"], abs=1e-9)


def _created(study: Any) -> tuple[Any, bool]:
    """The stored row of a study handle and whether create_study inserted it."""
    return study.record, study.created
