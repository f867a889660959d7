"""A worker's own process never imports keras: its trials, its final jobs and its study's data loader run in
children of its fork server (hpsearch.execution.children), which imports keras once. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, TrialState

from ..conftest import write_tiny_study

pytestmark = pytest.mark.slow

# A worker in a fresh interpreter (pytest's own process has imported keras long ago); it prints what it ran
# and which of the heavy modules its process imported.
WORKER = """
import json, sys

import hpsearch.cli.app  # what `hpsearch worker` has imported when it starts the worker
from hpsearch.execution.slots import run_worker
from hpsearch.store import open_store

url, slots = sys.argv[1], int(sys.argv[2])
ran = run_worker(lambda: open_store(url), url, slots=slots, study="tiny", idle_timeout=0)
heavy = ("keras", "tensorflow", "keras_tuner", "jax", "torch")
print(json.dumps({"ran": ran, "imported": [name for name in heavy if name in sys.modules]}))
"""

LOADERS = '''

def load_breaks_in_the_worker():
    """Loads at creation; once the test writes the marker, fails as a loader whose source went away."""
    if os.path.exists(os.path.join(os.path.dirname(__file__), "broken")):
        raise FileNotFoundError("/data/train.csv is gone")
    return load_data()


def load_killed_in_the_worker():
    """Loads at creation; once the test writes the marker, dies as the kernel's OOM killer ends a process."""
    import signal

    if os.path.exists(os.path.join(os.path.dirname(__file__), "broken")):
        os.kill(os.getpid(), signal.SIGKILL)
    return load_data()
'''


def run_worker_process(db_url: str, slots: int) -> dict[str, object]:
    command = [sys.executable, "-c", WORKER, db_url, str(slots)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_worker_process_imports_no_keras_while_its_trials_and_final_job_train(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    study = create_study(write_tiny_study(tmp_path, max_trials=2, max_epochs=1), store=store,
                         artifacts=tmp_path / "artifacts")  # fmt: skip
    Coordinator(store, [study.name]).step(study.record, target_queued=2)

    assert run_worker_process(db_url, slots=2) == {"ran": 2, "imported": []}  # `hpsearch worker --slots 2`
    assert [t.state for t in store.trials(study.record.id)] == [TrialState.COMPLETED] * 2

    job = study.promote(epochs=1, local=False)  # queued for any worker
    assert run_worker_process(db_url, slots=1) == {"ran": 1, "imported": []}
    finished = store.final_job(job.id)
    assert finished.state == TrialState.COMPLETED, finished.error
    assert finished.test_metrics  # evaluated on the test split, in the child


@pytest.mark.parametrize(
    ("loader", "error"),
    [
        (
            "load_breaks_in_the_worker",
            "loading data: tiny.py:load_breaks_in_the_worker: raised FileNotFoundError: /data/train.csv is gone",
        ),
        (
            "load_killed_in_the_worker",
            "loading data: its process ended with exit code -9 before it reported (out of memory?)",
        ),
    ],
)
def test_a_loader_that_fails_in_the_worker_fails_the_trial_with_its_error_and_the_worker_goes_on(
    store: Store, tmp_path: Path, loader: str, error: str
) -> None:
    path = write_tiny_study(tmp_path, LOADERS, data=loader, max_trials=1, max_epochs=1)
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts")
    Coordinator(store, [study.name]).step(study.record, target_queued=1)
    (tmp_path / "broken").touch()

    assert Worker(store, study="tiny", idle_timeout=0, poll_seconds=0.1).run() == 1
    [trial] = store.trials(study.record.id)
    assert (trial.state, trial.error) == (TrialState.FAILED, error)
