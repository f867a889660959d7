"""Pareto fronts: the dominance test in each direction, and the front of a stored multi-objective study
(completed trials only, read on SQLite and PostgreSQL)."""

from __future__ import annotations

from hpsearch.analysis.pareto import dominates, pareto_front, pareto_trials
from hpsearch.store import NewStudy, Store, TrialState
from hpsearch.strategies import NewTrial


def test_dominance_respects_each_direction() -> None:
    assert dominates([0.9, 100], [0.8, 200], ["max", "min"])
    assert not dominates([0.9, 300], [0.8, 200], ["max", "min"])
    assert not dominates([0.9, 100], [0.9, 100], ["max", "min"])


def test_front_keeps_exactly_the_non_dominated() -> None:
    points = [("a", [0.9, 300]), ("b", [0.8, 100]), ("c", [0.7, 200]), ("d", [0.95, 300]), ("e", [0.8, 100])]
    assert pareto_front(points, ["max", "min"]) == ["b", "d", "e"]


def test_front_of_a_stored_study_counts_completed_trials_only(store: Store) -> None:
    objectives = [{"name": "val_accuracy", "direction": "max"}, {"name": "num_params", "direction": "min"}]
    study, _ = store.create_study(
        NewStudy(
            name="front",
            objective_name="val_accuracy",
            direction="max",
            objectives=objectives,
            algorithm="random",
            max_trials=10,
            max_epochs=1,
            seed=0,
            spec={"search": {"max_retries": 1}, "run": {"lease_seconds": 60, "heartbeat_seconds": 1}},
            space={"space": [], "values": {}},
            source_path="/x/front.toml",
            base_dir="/x",
            artifact_root="/x/a",
        )
    )
    # (accuracy, size): 1 and 3 are the front; 0 and 2 are beaten; 4 would beat them all but never finishes.
    points = [(0.8, 300.0), (0.9, 200.0), (0.85, 250.0), (0.7, 100.0), (0.99, 1.0)]
    store.add_trials(study, [NewTrial({"i": i}, budget_epochs=1) for i in range(len(points))])
    worker = store.register_worker("w", "host", 1, None)
    for accuracy, size in points:
        claimed = store.claim(worker, study.id)
        assert claimed is not None
        logs = {"val_accuracy": accuracy, "num_params": size}
        assert store.record_epoch(claimed.trial_id, worker, 1, logs, "val_accuracy", "max", ["num_params"])
        if size > 1.0:
            assert store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    assert [t.number for t in pareto_trials(store, store.study("front"))] == [1, 3]
