"""One clock (issue 24): leases are written and judged by the database server's clock, so a worker whose own
clock is an hour off still claims, renews and completes its trials, and a dead worker's lease lapses on
time. The worker's clock is skewed by replacing the store's clock function (``utcnow``) in every store
module; the coordinator runs with the true clock. On SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import Store, StudyRecord, TrialState
from hpsearch.store.models import Trial, utcnow
from hpsearch.store.statements import NOW

from ..conftest import add_study

STORE_MODULES = ("models", "queue", "statements", "planning", "workers", "final_jobs", "studies", "reads")


def skew(monkeypatch: pytest.MonkeyPatch, hours: float) -> None:
    """This process's clock, as the store reads it, runs ``hours`` off."""
    skewed: Callable[[], datetime] = lambda: utcnow() + timedelta(hours=hours)  # noqa: E731
    for name in STORE_MODULES:
        module = importlib.import_module(f"hpsearch.store.{name}")
        if hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", skewed)


def lease_left(store: Store, trial_id: int) -> float:
    """Seconds from the database's now to the trial's lease end, both read by the database."""
    with store.session() as session:
        lease, now = session.execute(sa.select(Trial.lease_expires_at, NOW).where(Trial.id == trial_id)).one()
    return float((lease - now).total_seconds())


def one_trial(store: Store, lease_seconds: float) -> StudyRecord:
    study = add_study(store, max_retries=3, lease_seconds=lease_seconds)
    store.add_trials(study, [NewTrial({"u": 1}, 1)])
    return study


@pytest.mark.parametrize("hours", [-1.0, 1.0])
def test_a_worker_an_hour_off_claims_renews_and_completes(
    store: Store, monkeypatch: pytest.MonkeyPatch, hours: float
) -> None:
    study = one_trial(store, lease_seconds=60.0)
    worker = store.register_worker("skewed", "h", 1, None)
    with monkeypatch.context() as patch:
        skew(patch, hours)
        claimed = store.claim(worker, study.id)
        assert claimed is not None
        assert 0 < lease_left(store, claimed.trial_id) <= 60.0  # not an hour early or late
        assert store.heartbeat(claimed.trial_id, worker, 60.0, attempt=claimed.attempt) == "continue"
        assert 0 < lease_left(store, claimed.trial_id) <= 60.0
    # The coordinator, with the true clock, finds nothing expired...
    assert store.expire_leases({study.id: 3}) == 0
    with monkeypatch.context() as patch:
        skew(patch, hours)
        assert store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": 0.5}, "val_accuracy", "max",
                                  attempt=claimed.attempt)  # fmt: skip
        assert store.finish(claimed.trial_id, worker, TrialState.COMPLETED, attempt=claimed.attempt)
    trial = store.trial_by_id(claimed.trial_id)
    assert trial.state == TrialState.COMPLETED and trial.retries == 0 and trial.error is None
    assert trial.duration_seconds is not None and 0 <= trial.duration_seconds < 3600  # one clock for both ends


def test_a_dead_workers_lease_lapses_by_the_database_clock_even_if_its_clock_ran_ahead(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = one_trial(store, lease_seconds=0.2)
    worker = store.register_worker("ahead", "h", 1, None)
    with monkeypatch.context() as patch:
        skew(patch, 1.0)  # its lease would have run an hour past its death
        claimed = store.claim(worker, study.id)
    assert claimed is not None
    # The worker dies. The coordinator requeues the trial once the database's clock passes the lease: wait for
    # that condition (a 0.2 s lease), never for a fixed time.
    deadline = time.monotonic() + 60
    while store.expire_leases({study.id: 3}) == 0:
        assert time.monotonic() < deadline, f"lease still held: {lease_left(store, claimed.trial_id):.0f}s left"
        time.sleep(0.1)
    assert store.trial_by_id(claimed.trial_id).state == TrialState.QUEUED


def test_the_coordinator_lease_and_live_workers_use_the_database_clock(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = one_trial(store, lease_seconds=60.0)
    with monkeypatch.context() as patch:
        skew(patch, -1.0)  # a coordinator an hour behind takes the lease...
        assert store.hold_coordinator_lease(study.id, "behind", 30)
        worker = store.register_worker("behind", "h", 1, None)
        store.worker_alive(worker, "IDLE")
    # ...which another coordinator with the true clock does not see as lapsed.
    assert not store.hold_coordinator_lease(study.id, "true", 30)
    assert store.live_workers(30) == 1
