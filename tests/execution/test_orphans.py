"""Orphans (issues 23 and 24): a trial's forked processes end with the trial; a worker whose `hpsearch run`
is SIGKILLed stops by itself, handing its trial back uncharged; what a killed run left behind (workers and
their trials) is repaired by the next run. Real processes; every wait is for a condition, not a duration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.control.recovery import repair_dead_workers
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, TrialState, open_store
from hpsearch.strategies import NewTrial

from ..conftest import add_study, write_tiny_study

# The trial forks a grandchild that would sleep for ten minutes, and records its pid.
FORKS = """

import subprocess as _subprocess

import keras as _keras


class ForkGrandchild(_keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        child = _subprocess.Popen(["sleep", "600"])
        with open(os.path.join(os.path.dirname(__file__), "grandchild.pid"), "w") as handle:
            handle.write(str(child.pid))
"""

SLOW = """

import time as _time

import keras as _keras


class SlowEpochs(_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        _time.sleep(1.0)
"""


def gone(pid: int) -> bool:
    """No such process, or only its zombie left (nothing runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition, what: str, limit: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` (a generous limit only so that a broken build fails instead of hanging)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_trials_grandchild_ends_with_the_trial(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, extra_module=FORKS, max_trials=1, max_epochs=1)
    path.write_text(path.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:ForkGrandchild" }]'))
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record
    Coordinator(store, ["tiny"]).step(study, target_queued=1)
    assert Worker(store, study="tiny", idle_timeout=0, poll_seconds=0.1).run() == 1
    assert store.trials(study.id)[0].state == TrialState.COMPLETED
    pid = int((tmp_path / "grandchild.pid").read_text())
    wait_until(lambda: gone(pid), "the grandchild to be killed", limit=10)  # old code: alive for 600 s


def test_the_next_run_repairs_what_a_killed_runs_workers_left(store: Store) -> None:
    study = add_study(store, max_retries=1)
    store.add_trials(study, [NewTrial({"x": 0.1}, 1), NewTrial({"x": 0.2}, 1)])
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    alive = subprocess.Popen(["sleep", "600"])
    try:
        host = socket.gethostname()
        gone_worker = store.register_worker("gone", host, dead.pid, None)
        live_worker = store.register_worker("live", host, alive.pid, None)
        other_host = store.register_worker("elsewhere", "another-host", dead.pid, None)
        first = store.claim(gone_worker, study.id)
        second = store.claim(live_worker, study.id)
        assert first is not None and second is not None

        repaired = repair_dead_workers(store)
        assert (repaired.trials, repaired.workers) == (1, 1)
        trials = {t.id: t for t in store.trials(study.id)}
        back = trials[first.trial_id]
        assert (back.state, back.retries, back.error, back.worker_id) == (TrialState.QUEUED, 0, None, None)
        assert trials[second.trial_id].state == TrialState.RUNNING  # its worker lives: left alone
        states = {w.id: w.state for w in store.workers_by_id([gone_worker, live_worker, other_host]).values()}
        assert states[gone_worker] == "STOPPED"
        assert states[live_worker] != "STOPPED" and states[other_host] != "STOPPED"
        assert store.attempts(first.trial_id)[-1].outcome == "RELEASED"
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow
def test_a_sigkilled_run_leaves_no_worker_and_an_uncharged_queue(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, extra_module=SLOW, max_trials=2, max_epochs=4, workers=2)
    path.write_text(path.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:SlowEpochs" }]'))
    env = {**os.environ, "HPSEARCH_DB": db_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "run", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # only `run` itself is killed below: its workers must notice by themselves
    )
    store = open_store(db_url, create=True)
    try:

        def training() -> bool:
            try:
                trials = store.trials(store.study("tiny").id)
            except Exception:  # not created yet
                return False
            return any(t.state == TrialState.RUNNING and t.epochs_done >= 1 for t in trials)

        wait_until(training, "a trial with an epoch done")
        workers = {w.id: w for w in store.workers_by_id(list(range(1, 50))).values()}
        pids = [w.pid for w in workers.values() if w.state != "STOPPED"]
        assert pids
        run.send_signal(signal.SIGKILL)
        run.wait()
        for pid in pids:
            wait_until(lambda pid=pid: gone(pid), f"worker {pid} to stop by itself", limit=120)
        study = store.study("tiny")
        for trial in store.trials(study.id):
            assert trial.state in (TrialState.QUEUED, TrialState.COMPLETED), trial
            assert trial.retries == 0 and not trial.error, trial
        assert all(w.state == "STOPPED" for w in store.workers_by_id(list(workers)).values())

        again = subprocess.run(
            [sys.executable, "-m", "hpsearch", "run", str(path)], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=600,
        )
        assert again.returncode == 0, again.stderr
        trials = store.trials(study.id)
        assert [t.state for t in trials] == [TrialState.COMPLETED] * 2
        assert all(t.retries == 0 and not t.error for t in trials), [(t.retries, t.error) for t in trials]
    finally:
        if run.poll() is None:
            run.kill()
        store.engine.dispose()
