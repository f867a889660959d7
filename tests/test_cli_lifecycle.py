"""`hpsearch run` as a newcomer meets it: fail fast, a clean Ctrl-C, and a study's life (delete, extend,
a changed file, a completed study run again). Real processes on both databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import write_tiny_study
from .test_cli import hpsearch, table_count

pytestmark = pytest.mark.slow

FAILING_MODULE = """

def child_only_import(hp):
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # only in a trial's child, not at creation
        import hpsearch_no_such_module  # noqa: F401
    return build_model(hp)


def flaky(hp):
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        raise ValueError("this configuration cannot be built")
    return build_model(hp)
"""


def rows(db: str, query: str) -> list[sa.Row]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query)))
    finally:
        engine.dispose()


def test_an_unlogged_objective_is_refused_at_creation_with_a_suggestion(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path)
    path.write_text(path.read_text().replace('objective = "val_accuracy"', 'objective = "val_acc"'))
    result = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert result.returncode == 2, result.stderr
    assert "'val_acc' is not logged by the model" in result.stderr
    assert "did you mean 'val_accuracy'" in result.stderr
    assert table_count(db_url, "studies") == 0


def test_an_error_every_trial_repeats_fails_the_study_at_the_first_trial(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAILING_MODULE, build="child_only_import", max_trials=6, workers=1)
    result = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: study tiny: trial 0 failed with an error every trial would repeat"), last
    assert "No module named 'hpsearch_no_such_module'" in last
    assert "failed: 1 trial: ModuleNotFoundError" in result.stdout
    states = [r.state for r in rows(db_url, "SELECT state FROM trials")]
    assert states.count("FAILED") == 1 and "COMPLETED" not in states
    assert rows(db_url, "SELECT state FROM studies")[0].state == "FAILED"


def test_run_exits_non_zero_when_no_trial_completed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'none.db'}"
    path = write_tiny_study(tmp_path, extra_module=FAILING_MODULE, build="flaky", max_trials=2, workers=1)
    result = hpsearch("run", str(path), cwd=tmp_path, db=db)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed: 2 trials: ValueError: this configuration cannot be built" in result.stdout
    assert "no trial completed" in result.stderr


def test_ctrl_c_hands_trials_back_and_stops_workers(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, max_trials=4, max_epochs=2000, workers=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HPSEARCH_DB": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "run", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        # Until a trial is training (an epoch recorded): the interrupt then cuts a fit short, not a claim.
        while not table_count(db_url, "trial_metrics"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert f"`hpsearch run {path}` resumes" in stderr
    trials = rows(db_url, "SELECT state, retries, error FROM trials")
    assert trials and all(t.state == "QUEUED" for t in trials), trials
    assert all(t.retries == 0 and t.error is None for t in trials), trials
    assert {w.state for w in rows(db_url, "SELECT state FROM workers")} == {"STOPPED"}


def test_delete_extend_changed_file_and_completed_rerun(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    assert hpsearch("run", str(path), cwd=tmp_path, db=db_url).returncode == 0

    again = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert again.returncode == 0, again.stderr
    assert "study tiny is already completed (1 trials completed" in again.stdout
    assert table_count(db_url, "workers") == 1  # no worker started for nothing
    assert table_count(db_url, "trials") == 1  # the same study: no trial added

    changed = write_tiny_study(tmp_path, max_trials=1, max_epochs=3, workers=1, lease_seconds=45)
    refused = hpsearch("run", str(changed), cwd=tmp_path, db=db_url)
    assert refused.returncode == 2
    assert "differs in run.lease_seconds, search.max_epochs" in refused.stderr

    extended = hpsearch("study", "extend", "tiny", "--max-trials", "2", cwd=tmp_path, db=db_url)
    assert extended.returncode == 0, extended.stderr
    assert "max_trials 2; STOPPED" in extended.stdout
    smaller = hpsearch("study", "extend", "tiny", "--max-trials", "1", cwd=tmp_path, db=db_url)
    assert smaller.returncode == 2 and "extend it beyond that" in smaller.stderr
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)  # the file still says 1
    resumed = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(db_url, "SELECT COUNT(*) AS n FROM trials WHERE state = 'COMPLETED'")[0].n == 2

    kept = subprocess.run(
        [sys.executable, "-m", "hpsearch", "study", "delete", "tiny"],
        cwd=tmp_path,
        env={**os.environ, "HPSEARCH_DB": db_url},
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert kept.returncode == 1 and table_count(db_url, "studies") == 1
    artifacts = tmp_path / "hpsearch-artifacts"
    assert [p.name for p in artifacts.glob("tiny-*/*")] == ["tiny"]  # the study's own directory (issue 24)
    deleted = hpsearch("study", "delete", "tiny", "--artifacts", "--yes", cwd=tmp_path, db=db_url)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted study tiny (2 trials, COMPLETED)" in deleted.stdout
    assert table_count(db_url, "studies") == 0 and table_count(db_url, "trials") == 0
    assert not list(artifacts.iterdir())


def test_version() -> None:
    from hpsearch import __version__

    result = subprocess.run(
        [sys.executable, "-m", "hpsearch", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == f"hpsearch {__version__}"


def test_tensorflow_start_up_logs_stay_quiet_even_with_debug(tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "HPSEARCH_DB")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "--debug",
            "study",
            "create",
            str(path),
            "--db",
            f"sqlite:///{tmp_path}/q.db",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "tensorflow/" not in result.stderr and "cuda" not in result.stderr.lower(), result.stderr


def test_a_worker_started_under_nohup_still_stops_on_sigint(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'nohup.db'}"
    assert hpsearch("db", "upgrade", cwd=tmp_path, db=db).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "worker", "--db", db],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # what nohup ... & leaves
    )
    try:
        deadline = time.monotonic() + 240
        while not table_count(db, "workers"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "worker stopped (interrupted)" in stderr
    assert [w.state for w in rows(db, "SELECT state FROM workers")] == ["STOPPED"]
