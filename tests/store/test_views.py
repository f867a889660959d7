from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from hpsearch.store import Store, TrialState
from hpsearch.strategies import NewTrial

from ..conftest import add_study


def rows(store: Store, sql: str) -> list[dict]:  # type: ignore[type-arg]
    with store.engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql)).mappings()]


def test_study_progress_and_worker_utilization(store: Store) -> None:
    study = add_study(store, "demo")
    store.add_trials(study, [NewTrial({"i": i}, 2) for i in range(4)])
    busy = store.register_worker("busy", "h1", 1, "0")
    store.register_worker("idle", "h2", 2, None)
    for objective in (0.5, 0.9):
        claimed = store.claim(busy, study.id)
        assert claimed is not None
        time.sleep(0.3)
        for epoch in (1, 2):
            store.record_epoch(
                claimed.trial_id, busy, epoch, {"val_accuracy": objective * epoch / 2}, "val_accuracy", "max"
            )
        store.finish(claimed.trial_id, busy, TrialState.COMPLETED)
    failed = store.claim(busy, study.id)
    assert failed is not None
    store.finish(failed.trial_id, busy, TrialState.FAILED, "boom")
    store.worker_stopped(busy)

    [progress] = rows(store, "SELECT * FROM study_progress WHERE study = 'demo'")
    assert (progress["trials"], progress["queued"], progress["completed"], progress["failed"]) == (4, 1, 2, 1)
    assert progress["running"] == 0 and progress["pruned"] == 0
    assert progress["best_objective"] == pytest.approx(0.9)
    assert progress["epochs_trained"] == 4

    utilization = {r["worker"]: r for r in rows(store, "SELECT * FROM worker_utilization")}
    assert utilization["busy"]["attempts"] == 3 and utilization["idle"]["attempts"] == 0
    assert utilization["busy"]["busy_seconds"] >= 0.6
    assert utilization["busy"]["alive_seconds"] >= utilization["busy"]["busy_seconds"]
    assert utilization["busy"]["idle_seconds"] == pytest.approx(
        utilization["busy"]["alive_seconds"] - utilization["busy"]["busy_seconds"]
    )
    assert utilization["idle"]["busy_seconds"] == 0
