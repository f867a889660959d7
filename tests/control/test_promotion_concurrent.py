"""Two ``promote --local`` of one study at once (issue 24): the second finds the job the first runs and waits
for its result instead of exiting 1 with "RUNNING: no result"; if the first dies, the second resumes it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

import pytest

import hpsearch.api
from hpsearch.api import run_final_job_here
from hpsearch.records import NewTrial
from hpsearch.store import FinalJobRecord, NewFinalJob, Store

from ..conftest import add_study


def _running_job(store: Store, runner_pid: int) -> tuple[FinalJobRecord, int]:
    """A final job RUNNING under a worker row of process ``runner_pid`` on this host."""
    study = add_study(store)
    store.add_trials(study, [NewTrial({"i": 0}, 1)])
    trial = store.trial(study.id, 0)
    job, _ = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params={}, train_on="train", epochs=5, seed=1)
    )
    runner = store.register_worker("first-promote", socket.gethostname(), runner_pid, None)
    claimed = store.claim_final_job(runner, job_id=job.id)
    assert claimed is not None and claimed.state == "RUNNING"
    return claimed, runner


def test_a_second_local_promotion_waits_for_the_first_ones_result(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = subprocess.Popen(["sleep", "600"])  # stands for the first `promote --local`: alive, on this host
    try:
        job, runner = _running_job(store, first.pid)
        waiting = threading.Event()
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:
            waiting.set()
            real_sleep(seconds)

        monkeypatch.setattr(hpsearch.api.time, "sleep", sleep)
        result: list[Any] = []
        second = threading.Thread(target=lambda: result.append(run_final_job_here(store, job)))
        second.start()
        # Until the second promotion waits (or, as the old code did, has returned at once).
        while not waiting.wait(0.05) and second.is_alive():
            pass
        store.fail_final_job(job.id, runner, "the first promotion's result")
        second.join(timeout=60)
        assert not second.is_alive()
        assert [(r.state, r.error) for r in result] == [("FAILED", "the first promotion's result")]
    finally:
        first.kill()
        first.wait()


def test_a_second_local_promotion_resumes_the_job_when_the_first_process_is_gone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    job, _ = _running_job(store, gone.pid)
    ran: list[int] = []

    class OneJobWorker:
        """Stands for the real worker (which would train): claims the job and fails it with a marker."""

        def __init__(self, store: Store, final_job: int, max_trials: int) -> None:
            self.store, self.job_id = store, final_job

        def run(self) -> int:
            me = self.store.register_worker("second-promote", socket.gethostname(), 1, None)
            assert self.store.claim_final_job(me, job_id=self.job_id) is not None
            self.store.fail_final_job(self.job_id, me, "ran by the second promotion")
            ran.append(self.job_id)
            return 1

    monkeypatch.setattr("hpsearch.execution.worker.Worker", OneJobWorker)
    result = run_final_job_here(store, job)
    assert ran == [job.id]
    assert result.state == "FAILED" and result.error is not None
    assert result.error.endswith("ran by the second promotion")
