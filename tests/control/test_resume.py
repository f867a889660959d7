"""Resuming a FAILED study (issue 24): the streak of consecutive failures that failed it is reset, so the
study runs again once its cause (a read-only or full artifact root, say) is fixed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpsearch.api import Study
from hpsearch.control.coordinator import Coordinator
from hpsearch.store import Store, StudyState, TrialState, open_store
from hpsearch.strategies import NewTrial

from ..cli.clirun import run_cli
from ..conftest import add_study, write_tiny_study
from ..test_cli import hpsearch


def _fail_next(store: Store, study_id: int, worker: int) -> None:
    claimed = store.claim(worker, study_id)
    assert claimed is not None
    assert store.finish(claimed.trial_id, worker, TrialState.FAILED, "artifact root read-only", attempt=claimed.attempt)


def test_resuming_a_failed_study_resets_its_failure_streak(store: Store) -> None:
    study = add_study(store)  # max_consecutive_failures = 3
    store.add_trials(study, [NewTrial({"x": i / 10}, 1) for i in range(6)])
    worker = store.register_worker("w", "host", 1, None)
    for _ in range(3):
        _fail_next(store, study.id, worker)
    coordinator = Coordinator(store, [study.name])
    assert not coordinator.step(store.study_by_id(study.id), target_queued=0)
    assert store.study_state(study.id) == StudyState.FAILED

    handle = Study(store, study.name)
    assert handle.resume() == 3
    assert handle.state == StudyState.RUNNING
    assert coordinator.step(store.study_by_id(study.id), target_queued=0)  # the old streak no longer counts
    assert store.study_state(study.id) == StudyState.RUNNING
    _fail_next(store, study.id, worker)
    _fail_next(store, study.id, worker)
    assert coordinator.step(store.study_by_id(study.id), target_queued=0)  # 2 new failures: under the limit
    _fail_next(store, study.id, worker)
    assert not coordinator.step(store.study_by_id(study.id), target_queued=0)  # 3 new ones fail it again
    assert store.study_state(study.id) == StudyState.FAILED
    assert handle.resume() == 3  # only the failures since the last resume
    assert handle.resume() == 0  # not FAILED any more: nothing to forgive


def test_study_resume_says_the_streak_was_reset(
    store: Store, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    study = add_study(store)
    store.add_trials(study, [NewTrial({"x": 0.5}, 1)] * 3)
    worker = store.register_worker("w", "host", 1, None)
    for _ in range(3):
        _fail_next(store, study.id, worker)
    Coordinator(store, [study.name]).step(store.study_by_id(study.id), target_queued=0)
    monkeypatch.setenv("HPSEARCH_DB", db_url)
    code, out, err = run_cli(["study", "resume", study.name], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"study {study.name}: RUNNING"
    assert lines[1] == (
        "it had FAILED (3 consecutive trials failed (max_consecutive_failures = 3)); "
        "its 3 consecutive failures no longer count"
    )
    assert len(lines) == 2


# Fails in a trial's child while the file "broken" exists next to it (a transient cause, such as a read-only
# artifact root, that the user then fixes); study creation (in the parent) builds fine.
TRANSIENT = """

def broken_for_now(hp):
    import multiprocessing

    broken = os.path.join(os.path.dirname(__file__), "broken")
    if multiprocessing.parent_process() is not None and os.path.exists(broken):
        raise ValueError("this configuration cannot be built")
    return build_model(hp)
"""


@pytest.mark.slow
def test_run_resumes_a_failed_study_once_the_cause_is_fixed(tmp_path: Path, db_url: str) -> None:
    # Trials queued ahead of the failing ones run too: 6 leaves some for the second run.
    path = write_tiny_study(tmp_path, extra_module=TRANSIENT, build="broken_for_now", max_trials=6, workers=1)
    path.write_text(path.read_text().replace("[fit]", "max_consecutive_failures = 2\nmax_retries = 0\n\n[fit]"))
    (tmp_path / "broken").touch()
    failed = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert failed.returncode != 0 and "2 consecutive trials failed" in failed.stderr, failed.stderr
    (tmp_path / "broken").unlink()
    again = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert again.returncode == 0, again.stderr
    reason = r"2 consecutive trials failed \(max_consecutive_failures = 2\)"
    assert re.search(rf"it had FAILED \({reason}\); its \d consecutive failures no longer count", again.stdout)
    store = open_store(db_url)
    study = store.study("tiny")
    assert study.state == StudyState.COMPLETED
    assert TrialState.COMPLETED in [t.state for t in store.trials(study.id)]
    store.engine.dispose()
