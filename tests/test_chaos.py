"""Chaos: a Hyperband study on PostgreSQL survives kill -9 of workers and coordinators and a restart of
the database server. Needs a local PostgreSQL cluster this test may restart (pg_ctlcluster, as in CI)."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import write_tiny_study

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SLOW_EPOCHS = '''

import time as _time

import keras as _keras


class SlowEpochs(_keras.callbacks.Callback):
    """Makes an epoch last long enough for kills to land mid-training."""

    def on_epoch_end(self, epoch, logs=None):
        _time.sleep(1.0)
'''


def pg_cluster() -> tuple[str, str] | None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[-1], "main") if versions else None


def restart_postgres(cluster: tuple[str, str]) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"], check=True, timeout=120)


def query(url: str, sql: str) -> list[sa.Row]:  # type: ignore[type-arg]
    for _ in range(60):  # the server may be restarting
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(sa.text(sql)))
        except sa.exc.OperationalError:
            time.sleep(1)
        finally:
            engine.dispose()
    raise AssertionError("PostgreSQL did not come back")


def test_hyperband_study_survives_kills_and_a_database_restart(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("chaos runs on PostgreSQL")
    cluster = pg_cluster()
    if cluster is None:
        pytest.skip("no local PostgreSQL cluster to restart")
    path = write_tiny_study(
        tmp_path, extra_module=SLOW_EPOCHS, algorithm="hyperband", max_trials=100, max_epochs=9, lease_seconds=4
    )
    text = path.read_text().replace("max_trials = 100\n", "max_retries = 20\nmax_consecutive_failures = 50\n")
    path.write_text(text.replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:SlowEpochs" }]'))
    env = {**os.environ, "HPSEARCH_DB": db_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base = [sys.executable, "-m", "hpsearch"]
    created = subprocess.run(
        [*base, "study", "create", str(path), "--artifacts", str(tmp_path / "art")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(kind: str, index: int) -> subprocess.Popen[bytes]:
        args = ["coordinator", "--lease", "2"] if kind == "coordinator" else ["worker", "--study", "tiny"]
        log = (logs / f"{kind}-{index}.log").open("wb")
        return subprocess.Popen([*base, *args], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    workers = [start("worker", i) for i in range(4)]
    coordinators = [start("coordinator", i) for i in range(2)]
    rng = random.Random(20261124)
    kills = Counter[str]()
    events = ["worker"] * 5 + ["coordinator"] * 2 + ["postgres"]
    rng.shuffle(events)
    started = time.monotonic()
    try:
        next_event = started + 6
        while time.monotonic() - started < 420:
            state = query(db_url, "SELECT state FROM studies WHERE name = 'tiny'")[0][0]
            if state != "RUNNING":
                break
            if events and time.monotonic() >= next_event:
                event = events.pop()
                if event == "worker":
                    # Prefer a worker in the middle of a trial that has checkpointed: its resume is the test.
                    busy = query(
                        db_url,
                        "SELECT w.pid FROM trials t JOIN workers w ON w.id = t.worker_id "
                        "JOIN artifacts a ON a.trial_id = t.id WHERE t.state = 'RUNNING'",
                    )
                    pids = {row.pid for row in busy}
                    candidates = [i for i, w in enumerate(workers) if w.pid in pids]
                    if not candidates and time.monotonic() < next_event + 30:
                        events.append(event)  # wait a little for one to checkpoint
                        time.sleep(0.5)
                        continue
                    victim = rng.choice(candidates or list(range(len(workers))))
                    workers[victim].send_signal(signal.SIGKILL)
                    workers[victim].wait()
                    workers[victim] = start("worker", len(workers) + kills["worker"])
                elif event == "coordinator":
                    holder = query(db_url, "SELECT holder FROM coordinator_leases")
                    pids = {int(h[0].split("-")[-2]) for h in holder}
                    victim = next((i for i, c in enumerate(coordinators) if c.pid in pids), 0)
                    coordinators[victim].send_signal(signal.SIGKILL)
                    coordinators[victim].wait()
                    coordinators[victim] = start("coordinator", len(coordinators) + kills["coordinator"])
                else:
                    restart_postgres(cluster)
                kills[event] += 1
                next_event = time.monotonic() + rng.uniform(2, 4)
            time.sleep(0.5)
    finally:
        for process in workers + coordinators:
            process.kill()
            process.wait()
    print(f"\nchaos events: {dict(kills)} in {time.monotonic() - started:.0f}s")
    assert kills == {"worker": 5, "coordinator": 2, "postgres": 1}, "the study ended before the chaos did"

    study = query(db_url, "SELECT state, message FROM studies WHERE name = 'tiny'")[0]
    assert study.state == "COMPLETED", study
    trials = query(db_url, "SELECT id, number, state, error, objective, retries FROM trials ORDER BY number")
    assert len(trials) == 23  # Keras Tuner's Hyperband(max_epochs=9, factor=3) runs 23 trials
    assert all(t.state == "COMPLETED" or (t.state == "FAILED" and t.error) for t in trials), trials
    duplicates = query(
        db_url, "SELECT trial_id, epoch, name FROM trial_metrics GROUP BY trial_id, epoch, name HAVING COUNT(*) > 1"
    )
    assert duplicates == []
    attempts = query(
        db_url,
        "SELECT trial_id, attempt, start_epoch, last_checkpoint_epoch, outcome "
        "FROM trial_attempts ORDER BY trial_id, attempt",
    )
    by_trial: dict[int, list[sa.Row]] = {}  # type: ignore[type-arg]
    for row in attempts:
        by_trial.setdefault(row.trial_id, []).append(row)
    resumed = 0
    for trial in trials:
        rows = by_trial[trial.id]
        assert sum(r.outcome == "COMPLETED" for r in rows) == (trial.state == "COMPLETED")  # exactly once
        for before, after in itertools.pairwise(rows):
            # A resumed attempt starts from the last checkpoint the attempt before it left (or where that
            # one started, when it checkpointed nothing).
            expected = before.last_checkpoint_epoch if before.last_checkpoint_epoch is not None else before.start_epoch
            assert after.start_epoch == expected, (trial.number, rows)
            resumed += after.start_epoch > 0
    assert resumed >= 1, [rows for rows in by_trial.values() if len(rows) > 1]
    completed = [t.objective for t in trials if t.state == "COMPLETED" and t.objective is not None]
    best = subprocess.run([*base, "best", "tiny", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert json.loads(best.stdout)["best"]["objective"] == max(completed)
    print(
        f"trials: {Counter(t.state for t in trials)}; attempts: {len(attempts)}; "
        f"re-run attempts: {len(attempts) - len(trials)}, of which resumed from a checkpoint: {resumed}"
    )
