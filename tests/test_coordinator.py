"""The coordinator keeps no state: a restarted one continues a Hyperband study exactly as before."""

from __future__ import annotations

import pytest

from hpsearch.coordinator import Coordinator
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.db import make_engine
from hpsearch.store.models import Study
from hpsearch.strategies.schedulers import Hyperband


def hyperband_study(store: Store) -> Study:
    search = {
        "algorithm": "hyperband",
        "max_epochs": 9,
        "factor": 3,
        "hyperband_iterations": 1,
        "max_retries": 1,
        "max_consecutive_failures": 3,
    }
    space = {
        "space": [
            {
                "class_name": "Float",
                "config": {
                    "name": "x",
                    "conditions": [],
                    "min_value": 0.0,
                    "max_value": 1.0,
                    "step": None,
                    "sampling": "linear",
                },
            }
        ]
    }
    study, _ = store.create_study(
        Study(
            name="hb",
            objective_name="val_accuracy",
            direction="max",
            algorithm="hyperband",
            max_trials=Hyperband().total_trials(9),
            max_epochs=9,
            seed=5,
            spec={"search": search, "run": {"lease_seconds": 60, "heartbeat_seconds": 1}},
            space=space,
            source_path="/x/hb.toml",
            base_dir="/x",
            artifact_root="/x/a",
        )
    )
    return study


def simulate(url: str, restart_every: int | None) -> list[tuple]:  # type: ignore[type-arg]
    """One simulated worker trains trials one at a time; the objective is a function of the params and epochs.
    With ``restart_every``, the coordinator (and its database connection) is replaced that often."""
    store = Store(make_engine(url))
    study = hyperband_study(store)
    coordinator = Coordinator(store, ["hb"], prefetch=0)
    worker = store.register_worker("sim", "host", 1, None)
    for step in range(1000):
        if restart_every and step % restart_every == restart_every - 1:
            store.engine.dispose()
            store = Store(make_engine(url))
            coordinator = Coordinator(store, ["hb"], prefetch=0)
        if not coordinator.step(store.study_by_id(study.id), target_queued=1):
            break
        claimed = store.claim(worker, study.id)
        if claimed is None:
            continue
        x = float(claimed.params["x"])
        for epoch in range(claimed.initial_epoch + 1, claimed.budget_epochs + 1):
            accuracy = 1 - (x - 0.37) ** 2 - 0.5 / epoch
            store.record_epoch(claimed.trial_id, worker, epoch, {"val_accuracy": accuracy}, "val_accuracy", "max")
        store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    assert store.study_by_id(study.id).state == StudyState.COMPLETED
    schedule = [
        (t.number, t.bracket, t.rung, t.budget_epochs, t.initial_epoch, t.parent_trial_id, t.params["x"])
        for t in store.trials(study.id)
    ]
    store.engine.dispose()
    return schedule


@pytest.mark.parametrize("restart_every", [2, 3, 7])
def test_a_restarted_coordinator_continues_the_same_hyperband_schedule(
    db_url: str, restart_every: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    uninterrupted_url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'ref.db'}"
    from hpsearch.store.db import upgrade

    for url in (uninterrupted_url, db_url):
        upgrade(make_engine(url))
    reference = simulate(uninterrupted_url, restart_every=None)
    assert len(reference) == Hyperband().total_trials(9)
    assert {row[2] for row in reference} == {0, 1, 2}  # rounds and promotions happened
    assert simulate(db_url, restart_every=restart_every) == reference
