"""One simulated worker training a study to its end against the real coordinator, with the coordinator (and its
database connection) replaced every few steps if asked: the restart tests of the coordinator and of
``algorithm = "auto"`` compare its schedule with an uninterrupted run's."""

from __future__ import annotations

from collections.abc import Callable

from hpsearch.control.coordinator import Coordinator
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.db import make_engine

Schedule = list[tuple]  # type: ignore[type-arg]


def train_to_the_end(
    store: Store,
    url: str,
    study_id: int,
    restart_every: int | None,
    before_step: Callable[[int], None] = lambda step: None,
    max_steps: int = 2000,
) -> Schedule:
    """Trains trials one at a time (the objective a function of ``x`` and the epoch) until the coordinator says
    the study has ended; returns each trial's (number, bracket, rung, budget, initial epoch, parent, x) and
    disposes of the store's engine. ``before_step(step)`` runs before each coordinator step."""
    name = store.study_by_id(study_id).name
    coordinator = Coordinator(store, [name], prefetch=0)
    worker = store.register_worker("sim", "host", 1, None)
    for step in range(max_steps):
        before_step(step)
        if restart_every and step % restart_every == restart_every - 1:
            store.engine.dispose()
            store = Store(make_engine(url))
            coordinator = Coordinator(store, [name], prefetch=0)
        if not coordinator.step(store.study_by_id(study_id), target_queued=1):
            break
        claimed = store.claim(worker, study_id)
        if claimed is None:
            continue
        x = float(claimed.params["x"])
        for epoch in range(claimed.initial_epoch + 1, claimed.budget_epochs + 1):
            accuracy = 1 - (x - 0.37) ** 2 - 0.5 / epoch
            store.record_epoch(claimed.trial_id, worker, epoch, {"val_accuracy": accuracy}, "val_accuracy", "max")
        store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    assert store.study_by_id(study_id).state == StudyState.COMPLETED
    schedule = [
        (t.number, t.bracket, t.rung, t.budget_epochs, t.initial_epoch, t.parent_trial_id, t.params["x"])
        for t in store.trials(study_id)
    ]
    store.engine.dispose()
    return schedule
