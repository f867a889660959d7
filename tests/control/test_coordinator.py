"""The coordinator keeps no state: a restarted one continues a Hyperband study exactly as before."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from hpsearch.control import coordinator as coordinator_module
from hpsearch.control.coordinator import Coordinator
from hpsearch.store import NewStudy, Store, StudyRecord, StudyState, TrialState
from hpsearch.store.db import make_engine
from hpsearch.store.models import Study, utcnow
from hpsearch.store.statements import NOW
from hpsearch.strategies.schedulers import Hyperband

from ..conftest import UNIT_X_SPACE, add_study
from .simulated_worker import Schedule, train_to_the_end


def hyperband_study(store: Store) -> StudyRecord:
    search = {
        "algorithm": "hyperband",
        "max_epochs": 9,
        "factor": 3,
        "hyperband_iterations": 1,
        "max_retries": 1,
        "max_consecutive_failures": 3,
    }
    space = UNIT_X_SPACE
    study, _ = store.create_study(
        NewStudy(
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


def simulate(url: str, restart_every: int | None) -> Schedule:
    """One simulated worker trains a Hyperband study's trials one at a time; with ``restart_every``, the
    coordinator (and its database connection) is replaced that often."""
    store = Store(make_engine(url))
    return train_to_the_end(store, url, hyperband_study(store).id, restart_every, max_steps=1000)


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


def run_simulated(
    store: Store, study: StudyRecord, coordinator: Coordinator, epochs_per_trial: int | None = None
) -> None:
    worker = store.register_worker(f"sim-{study.name}", "host", 1, None)
    for _ in range(500):
        if not coordinator.step(store.study_by_id(study.id), target_queued=2):
            return
        claimed = store.claim(worker, study.id)
        if claimed is None:
            continue
        last = claimed.budget_epochs if epochs_per_trial is None else claimed.initial_epoch + epochs_per_trial
        for epoch in range(claimed.initial_epoch + 1, last + 1):
            store.record_epoch(
                claimed.trial_id, worker, epoch, {"val_accuracy": 0.5 + epoch / 100}, "val_accuracy", "max"
            )
        store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    raise AssertionError("the study did not finish")


def budget_study(store: Store, name: str, **search: object) -> StudyRecord:
    study = add_study(store, name)
    spec = {**study.spec, "search": {**study.spec["search"], "algorithm": "random", **search}}
    with store.session() as session:
        row = session.get_one(Study, study.id)
        row.spec, row.max_trials, row.max_epochs = spec, 100, 4
        row.space = UNIT_X_SPACE
    return store.study_by_id(study.id)


def test_max_total_epochs_is_honoured_exactly(store: Store) -> None:
    study = budget_study(store, "epochs", max_total_epochs=10)
    run_simulated(store, study, Coordinator(store, ["epochs"], prefetch=3))
    trials = store.trials(study.id)
    final = store.study_by_id(study.id)
    assert final.state == StudyState.COMPLETED and "max_total_epochs of 10 reached" in (final.message or "")
    assert sum(t.epochs_done - t.initial_epoch for t in trials) == 8  # two 4-epoch trials; a third would overrun
    # Early stopping leaves budget for more trials: 3 epochs each, so three trials fit in 10.
    study = budget_study(store, "early", max_total_epochs=10)
    run_simulated(store, study, Coordinator(store, ["early"], prefetch=3), epochs_per_trial=3)
    assert sum(t.epochs_done for t in store.trials(study.id)) <= 10
    assert len([t for t in store.trials(study.id) if t.state == TrialState.COMPLETED]) == 3


def test_max_wall_time_closes_queued_trials_and_stops_running_ones(store: Store) -> None:
    study = budget_study(store, "late", max_wall_time=3600.0)
    coordinator = Coordinator(store, ["late"], prefetch=2)
    assert coordinator.step(study, target_queued=3)
    worker = store.register_worker("w", "h", 1, None)
    running = store.claim(worker, study.id)
    assert running is not None
    with store.session() as session:  # the study began two hours ago
        session.get_one(Study, study.id).created_at -= timedelta(hours=2)
    assert coordinator.step(store.study_by_id(study.id), target_queued=3)  # waits for the running trial
    assert store.heartbeat(running.trial_id, worker, 60) == "stop"
    assert {t.state for t in store.trials(study.id) if t.id != running.trial_id} == {TrialState.PRUNED}
    store.finish(running.trial_id, worker, TrialState.PRUNED)
    assert not coordinator.step(store.study_by_id(study.id), target_queued=3)
    final = store.study_by_id(study.id)
    assert final.state == StudyState.COMPLETED and "max_wall_time" in (final.message or "")


@pytest.mark.parametrize("hours", [-1.0, 1.0])
def test_max_wall_time_is_judged_by_the_database_clock(
    store: Store, monkeypatch: pytest.MonkeyPatch, hours: float
) -> None:
    """A coordinator whose clock is an hour off judges a 30-minute study by the database's clock (which also
    wrote the study's created_at): the study neither ends at once nor runs an hour too long."""
    study = budget_study(store, "half-hour", max_wall_time=1800.0)
    with store.session() as session:
        created, now = session.execute(sa.select(Study.created_at, NOW).where(Study.id == study.id)).one()
    assert abs((now - created).total_seconds()) < 60  # written on the database's clock
    monkeypatch.setattr(coordinator_module, "utcnow", lambda: utcnow() + timedelta(hours=hours), raising=False)
    coordinator = Coordinator(store, ["half-hour"], prefetch=2)
    assert coordinator.step(study, target_queued=2)
    assert {t.state for t in store.trials(study.id)} == {TrialState.QUEUED}  # still in time
    with store.session() as session:  # 31 minutes later, by the database's clock
        session.get_one(Study, study.id).created_at -= timedelta(minutes=31)
    assert not coordinator.step(store.study_by_id(study.id), target_queued=2)
    assert "max_wall_time" in (store.study_by_id(study.id).message or "")


def test_a_standby_coordinator_takes_over_when_the_lease_lapses(store: Store) -> None:
    study = budget_study(store, "pair")
    first = Coordinator(store, ["pair"], lease_seconds=0.5)
    standby = Coordinator(store, ["pair"], lease_seconds=0.5)
    assert first.tick() and store.counts(study.id)["QUEUED"] == 3  # one live worker unknown: 1 + prefetch 2
    queued_before = store.counts(study.id)["QUEUED"]
    assert standby.tick()  # the study is running, but the first coordinator holds it: no planning here
    assert store.history(study.id)[-1].number == queued_before - 1
    assert not store.hold_coordinator_lease(study.id, standby.name, 0.5)
    time.sleep(0.6)  # the first coordinator died: its lease lapses
    assert store.hold_coordinator_lease(study.id, standby.name, 0.5)
    assert not store.hold_coordinator_lease(study.id, first.name, 0.5)


def test_a_strategy_that_cannot_plan_fails_its_study_not_the_coordinator(store: Store) -> None:
    broken = budget_study(store, "broken")
    healthy = budget_study(store, "healthy")
    with store.session() as session:
        session.get_one(Study, broken.id).space = {"space": [{"class_name": "Mystery", "config": {"name": "x"}}]}
    Coordinator(store).tick()
    failed = store.study_by_id(broken.id)
    assert failed.state == StudyState.FAILED and "unsupported hyperparameter class 'Mystery'" in (failed.message or "")
    assert store.study_by_id(healthy.id).state == StudyState.RUNNING and store.counts(healthy.id)["QUEUED"] > 0


@pytest.mark.parametrize("with_curves", [False, True])
def test_the_history_kept_between_ticks_equals_a_fresh_read(store: Store, with_curves: bool) -> None:
    study = budget_study(store, "kept")
    coordinator = Coordinator(store, ["kept"])
    worker = store.register_worker("w", "h", 1, None)
    outcomes = [TrialState.COMPLETED, TrialState.FAILED, None, TrialState.PRUNED, "retry", TrialState.COMPLETED]
    for step, outcome in enumerate(outcomes):
        assert coordinator.step(store.study_by_id(study.id), target_queued=3)
        claimed = store.claim(worker, study.id)
        assert claimed is not None
        store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": 0.1 * step}, "val_accuracy", "max")
        if outcome == "retry":
            store.retry(claimed.trial_id, worker, "crashed")
        elif outcome is not None:  # None: the trial keeps running, and reports again below
            store.finish(claimed.trial_id, worker, outcome)
        assert coordinator.history(study.id, with_curves) == store.history(study.id, with_curves)
    running = store.trials(study.id)
    store.record_epoch(running[2].id, worker, 2, {"val_accuracy": 0.9}, "val_accuracy", "max")
    kept = coordinator.history(study.id, with_curves)
    assert kept == store.history(study.id, with_curves)
    assert kept[2].epochs_done == 2 and (kept[2].curve == {1: pytest.approx(0.2), 2: 0.9} or not with_curves)


def test_run_pauses_only_after_a_tick_that_queued_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    study = budget_study(store, "pace")
    with store.session() as session:
        session.get_one(Study, study.id).max_trials = 4
    coordinator = Coordinator(store, ["pace"], poll_seconds=0.25, prefetch=0)
    worker = store.register_worker("sim", "host", 1, None)
    pauses: list[float] = []
    monkeypatch.setattr("hpsearch.control.coordinator.time.sleep", pauses.append)
    queued_per_tick: list[int] = []

    def workers_every_other_tick() -> None:
        queued_per_tick.append(coordinator.queued)
        if len(queued_per_tick) % 2 == 0:  # on odd ticks the queued trial waits: the next tick plans nothing
            return
        while (claimed := store.claim(worker, study.id)) is not None:
            store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": 0.5}, "val_accuracy", "max")
            store.finish(claimed.trial_id, worker, TrialState.COMPLETED)

    coordinator.run(until_done=True, on_tick=workers_every_other_tick)
    assert store.study_by_id(study.id).state == StudyState.COMPLETED
    assert sum(queued_per_tick) == 4 and 0 in queued_per_tick[:-1]
    # The last tick ends the run; every other tick that queued nothing pauses, and only those.
    assert pauses == [0.25] * queued_per_tick[:-1].count(0)


def test_the_queue_is_refilled_once_half_of_it_is_taken_by_any_coordinator(store: Store) -> None:
    """One live worker and a prefetch of 3 want 4 trials queued: a tick plans nothing while more than 2
    wait, then tops the queue up to 4 in one batch; a restarted coordinator decides the same from the
    database."""
    study = budget_study(store, "refill")
    worker = store.register_worker("w", "h", 1, None)

    def tick_queues(coordinator: Coordinator) -> int:
        assert coordinator.tick()
        return coordinator.queued

    def take(count: int) -> None:
        for _ in range(count):
            claimed = store.claim(worker, study.id)
            assert claimed is not None
            store.finish(claimed.trial_id, worker, TrialState.COMPLETED)

    coordinator = Coordinator(store, ["refill"], prefetch=3)
    assert tick_queues(coordinator) == 4
    take(1)
    assert tick_queues(coordinator) == 0  # 3 still queued: more than half of 4
    restarted = Coordinator(store, ["refill"], prefetch=3)  # a new process: nothing kept but the database
    restarted.name = coordinator.name  # holding the first one's lease, so the test need not wait for it to lapse
    assert tick_queues(restarted) == 0
    take(1)
    assert tick_queues(restarted) == 2 and store.counts(study.id)["QUEUED"] == 4
    assert coordinator_module.refill(queued=0, target=1) == 1 and coordinator_module.refill(3, 3) == 0
