"""The lease is renewed from the claim on (issue 24): a worker whose study's data takes longer to load than
the lease keeps its trial. The loader blocks until the test creates a file, and the test releases it only
after it saw the lease renewed and the original lease pass by the database's clock with the trial still
RUNNING (no sleep decides anything). On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, TrialState
from hpsearch.store.models import Trial
from hpsearch.store.statements import NOW

from ..conftest import write_tiny_study

pytestmark = pytest.mark.slow

GATED_LOADER = '''

def load_gated():
    """Blocks (once armed) until the test opens the gate: a loader slower than the lease."""
    import time

    gate = {gate!r}
    if os.path.exists(gate + ".armed"):
        open(gate + ".started", "w").close()
        while not os.path.exists(gate + ".open"):
            time.sleep(0.05)
    return load_data()
'''


def wait_for(condition: Callable[[], bool], what: str, limit: float = 180.0) -> None:
    """Poll until ``condition`` holds; fail naming ``what`` if it never does (a generous bound, not a timing)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def lease_and_now(store: Store, trial_id: int) -> tuple[datetime, datetime, str]:
    with store.session() as session:
        lease, now, state = session.execute(
            sa.select(Trial.lease_expires_at, NOW, Trial.state).where(Trial.id == trial_id)
        ).one()
    return lease, now, state


def test_a_loader_slower_than_the_lease_keeps_the_trial(store: Store, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    path = write_tiny_study(
        tmp_path, extra_module=GATED_LOADER.format(gate=str(gate)), data="load_gated", max_trials=1, max_epochs=1,
        lease_seconds=2,
    )  # fmt: skip
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record  # the gate is not armed yet
    Coordinator(store, [study.name]).step(study, target_queued=1)
    Path(f"{gate}.armed").touch()
    worker = Worker(store, study=study.name, max_trials=1, poll_seconds=0.1)
    ran: list[int] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run()), daemon=True)
    thread.start()
    try:
        wait_for(Path(f"{gate}.started").exists, "the worker claimed the trial and began loading its data")
        [trial] = store.trials(study.id)
        claimed_lease, _, _ = lease_and_now(store, trial.id)
        # Renewed while the loader still blocks...
        wait_for(lambda: lease_and_now(store, trial.id)[0] > claimed_lease, "the lease renewed during loading")
        # ...and still held once the claim's own lease has passed by the database's clock.
        wait_for(lambda: lease_and_now(store, trial.id)[1] > claimed_lease, "the claim's lease passing")
        assert store.expire_leases({study.id: 0}) == 0
        assert lease_and_now(store, trial.id)[2] == TrialState.RUNNING
        assert not Path(f"{gate}.open").exists()  # the loader is still blocked: the lease outlived it
    finally:
        Path(f"{gate}.open").touch()
        thread.join(300)
    assert ran == [1]
    [trial] = store.trials(study.id)
    assert trial.state == TrialState.COMPLETED and trial.retries == 0 and trial.error is None
    assert [a.outcome for a in store.attempts(trial.id)] == ["COMPLETED"]
