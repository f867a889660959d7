"""Chaos: a Hyperband study on PostgreSQL survives kill -9 of workers and coordinators, a worker frozen
(SIGSTOP) past its lease and let go on (SIGCONT) after its trial was taken over, a worker whose clock runs an
hour behind, and a restart of the database server; every COMPLETED trial's checkpoint row names an existing
file with the recorded sha256. Opt-in (``python -m pytest -m chaos tests/test_chaos.py``): the default run
deselects it.

It runs on a PostgreSQL cluster of its own (tests/pg_cluster.py: initdb in a temporary directory, another
port), which it restarts; the machine's server (HPSEARCH_TEST_PG) is never touched, and the test checks that
its start time is the same afterwards. No assertion depends on timing: before killing a worker whose resume
it asserts, it waits until that worker's trial has a checkpoint, and freezes the worker (SIGSTOP) to confirm
the trial is still mid-training before the SIGKILL.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .conftest import PG_SERVER, write_tiny_study
from .pg_cluster import PgCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SLOW_EPOCHS = '''

import time as _time

import keras as _keras


class SlowEpochs(_keras.callbacks.Callback):
    """Makes an epoch last long enough for kills to land mid-training."""

    def on_epoch_end(self, epoch, logs=None):
        _time.sleep(1.0)
'''

# RUNNING trials whose open attempt has checkpointed and has epochs left to train, with their worker's pid.
CHECKPOINTED = """
SELECT t.id AS trial_id, a.attempt, a.last_checkpoint_epoch AS epoch, w.pid
FROM trials t JOIN workers w ON w.id = t.worker_id
JOIN trial_attempts a ON a.trial_id = t.id AND a.ended_at IS NULL
WHERE t.state = 'RUNNING' AND a.last_checkpoint_epoch IS NOT NULL AND a.last_checkpoint_epoch < t.budget_epochs
"""
# How long a worker kill whose resume is asserted waits for a checkpoint: generous, as the machine may be
# busy; the first worker kill must find one, later ones fall back to killing any worker after FALLBACK_S.
CHECKPOINT_WAIT_S = 300.0
FALLBACK_S = 20.0
CHAOS_LIMIT_S = 900.0
# A worker whose clock, as hpsearch reads it, runs an hour behind: every store module's ``utcnow`` is replaced
# before the CLI runs (leases and compared times must come from the database server's clock).
SKEWED_WORKER = """
import datetime, sys
import hpsearch.cli
import hpsearch.store.models as models
real = models.utcnow
def behind():
    return real() - datetime.timedelta(hours=1)
for module in list(sys.modules.values()):
    if getattr(module, "__name__", "").startswith("hpsearch") and getattr(module, "utcnow", None) is real:
        module.utcnow = behind
hpsearch.cli.main()
"""
# Attempts of a trial after the given one: the trial was taken over (or ended) while that attempt's worker slept.
TAKEN_OVER = "SELECT COUNT(*) FROM trial_attempts WHERE trial_id = :trial AND attempt > :attempt"


@dataclass(frozen=True)
class TargetedKill:
    """A worker killed mid-trial after its attempt ``attempt`` of trial ``trial_id`` checkpointed ``epoch``."""

    trial_id: int
    attempt: int
    epoch: int


def query(url: str, sql: str, **params: Any) -> list[sa.Row[Any]]:
    for _ in range(120):  # the server may be restarting
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as connection:
                return list(connection.execute(sa.text(sql), params))
        except sa.exc.OperationalError:
            time.sleep(1)
        finally:
            engine.dispose()
    raise AssertionError("PostgreSQL did not come back")


def machine_server_started() -> datetime | None:
    """pg_postmaster_start_time() of the machine's server (HPSEARCH_TEST_PG); None when it is not reachable
    (unless HPSEARCH_REQUIRE_PG=1, as in CI: then the test fails)."""
    engine = sa.create_engine(PG_SERVER, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            started: datetime = connection.scalar(sa.text("SELECT pg_postmaster_start_time()"))
            return started
    except sa.exc.OperationalError as exc:
        if os.environ.get("HPSEARCH_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {exc}")
        return None
    finally:
        engine.dispose()


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a worker or coordinator and everything it started (its trial process, its forkserver): each
    runs in a session of its own, so the group is exactly its process tree."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


@pytest.fixture
def own_pg() -> Iterator[PgCluster]:
    with running_cluster() as cluster:
        yield cluster


class Chaos:
    """The study's processes and the kills: workers and coordinators run with ``HPSEARCH_DB`` = the test's
    own cluster, each in its own session (so a kill takes its children too)."""

    def __init__(self, cluster: PgCluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.url = cluster.url
        self.cwd = tmp_path
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.env = {**os.environ, "HPSEARCH_DB": self.url, "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.base = [sys.executable, "-m", "hpsearch"]
        self.started = Counter[str]()
        self.workers = [self.start("worker") for _ in range(3)]
        # Never killed nor paused: it must complete trials with its clock an hour behind.
        self.skewed = self.start("skewed")
        self.coordinators = [self.start("coordinator") for _ in range(2)]
        self.targeted: list[TargetedKill] = []
        self.paused: list[TargetedKill] = []

    def start(self, kind: str) -> subprocess.Popen[bytes]:
        args = ["coordinator", "--lease", "2"] if kind == "coordinator" else ["worker", "--study", "tiny"]
        base = [sys.executable, "-c", SKEWED_WORKER] if kind == "skewed" else self.base
        log = (self.logs / f"{kind}-{self.started[kind]}.log").open("wb")
        self.started[kind] += 1
        return subprocess.Popen(
            [*base, *args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return bool(query(self.url, "SELECT state FROM studies WHERE name = 'tiny'")[0][0] == "RUNNING")

    def freeze_checkpointed_worker(self) -> tuple[int, TargetedKill] | None:
        """Stop (SIGSTOP) a worker whose trial has checkpointed and is still mid-training, confirmed after the
        stop (it may have finished in between; then it is let go on). None when there is no such worker."""
        index_of = {worker.pid: i for i, worker in enumerate(self.workers)}
        for row in query(self.url, CHECKPOINTED):
            if row.pid not in index_of:
                continue
            worker = self.workers[index_of[row.pid]]
            kill_group(worker, signal.SIGSTOP)
            time.sleep(1.0)  # let the server apply whatever the worker sent just before it stopped
            confirmed = [
                r
                for r in query(self.url, CHECKPOINTED + " AND t.id = :trial", trial=row.trial_id)
                if r.attempt == row.attempt and r.pid == row.pid
            ]
            if confirmed:
                return index_of[row.pid], TargetedKill(row.trial_id, row.attempt, confirmed[0].epoch)
            kill_group(worker, signal.SIGCONT)
        return None

    def kill_worker(self, deadline: float, required: bool) -> None:
        """Kill a worker mid-trial after its checkpoint (waiting until ``deadline`` for one); past the
        deadline, fail when ``required``, else kill a random one."""
        while True:
            frozen = self.freeze_checkpointed_worker()
            if frozen is not None:
                index, kill = frozen
                self.targeted.append(kill)
                break
            if time.monotonic() >= deadline or not self.running():
                assert not required, (
                    f"no running trial checkpointed within {CHECKPOINT_WAIT_S:.0f}s (or the study ended)"
                )
                index = random.Random(len(self.targeted)).randrange(len(self.workers))
                break
            time.sleep(0.5)
        kill_group(self.workers[index])
        self.workers[index].wait()
        self.workers[index] = self.start("worker")

    def pause_worker(self, deadline: float, required: bool) -> None:
        """Freeze (SIGSTOP) a worker whose trial checkpointed, wait until another attempt took the trial over (its
        lease lapsed), then let it go on (SIGCONT): its late writes must change nothing."""
        while (frozen := self.freeze_checkpointed_worker()) is None:
            if time.monotonic() >= deadline or not self.running():
                assert not required, f"no running trial checkpointed within {CHECKPOINT_WAIT_S:.0f}s to pause"
                return
            time.sleep(0.5)
        index, paused = frozen
        self.paused.append(paused)
        taken_over = time.monotonic() + CHECKPOINT_WAIT_S
        while not query(self.url, TAKEN_OVER, trial=paused.trial_id, attempt=paused.attempt)[0][0]:
            assert time.monotonic() < taken_over, f"trial {paused.trial_id} was never taken over"
            time.sleep(0.5)
        kill_group(self.workers[index], signal.SIGCONT)

    def kill_coordinator(self) -> None:
        """Kill the coordinator that holds the study's lease (the first one when none holds it)."""
        holders = query(self.url, "SELECT holder FROM coordinator_leases")
        pids = {int(h[0].split("-")[-2]) for h in holders}
        victim = next((i for i, c in enumerate(self.coordinators) if c.pid in pids), 0)
        kill_group(self.coordinators[victim])
        self.coordinators[victim].wait()
        self.coordinators[victim] = self.start("coordinator")

    def stop_all(self) -> None:
        for process in [*self.workers, self.skewed, *self.coordinators]:
            kill_group(process)
            process.wait()


def run_chaos(chaos: Chaos) -> Counter[str]:
    """Five worker kills, a worker paused past its lease, two coordinator kills and one database restart, in a
    seeded order, 2-4 s apart."""
    rng = random.Random(20261124)
    kills = Counter[str]()
    events = ["worker"] * 5 + ["pause"] + ["coordinator"] * 2 + ["postgres"]
    rng.shuffle(events)
    started = time.monotonic()
    next_event = started + 6
    while time.monotonic() - started < CHAOS_LIMIT_S and chaos.running():
        if events and time.monotonic() >= next_event:
            event = events.pop()
            if event == "worker":
                first = not chaos.targeted
                wait = CHECKPOINT_WAIT_S if first else FALLBACK_S
                chaos.kill_worker(time.monotonic() + wait, required=first)
            elif event == "pause":
                chaos.pause_worker(time.monotonic() + CHECKPOINT_WAIT_S, required=True)
            elif event == "coordinator":
                chaos.kill_coordinator()
            else:
                chaos.cluster.restart()
            kills[event] += 1
            next_event = time.monotonic() + rng.uniform(2, 4)
        time.sleep(0.5)
    print(
        f"\nchaos events: {dict(kills)} in {time.monotonic() - started:.0f}s; targeted kills: {chaos.targeted}; "
        f"paused: {chaos.paused}"
    )
    return kills


def attempts_by_trial(url: str) -> dict[int, list[sa.Row[Any]]]:
    rows = query(
        url,
        "SELECT trial_id, attempt, start_epoch, last_checkpoint_epoch, outcome "
        "FROM trial_attempts ORDER BY trial_id, attempt",
    )
    by_trial: dict[int, list[sa.Row[Any]]] = {}
    for row in rows:
        by_trial.setdefault(row.trial_id, []).append(row)
    return by_trial


@pytest.mark.timeout(1500)
def test_hyperband_study_survives_kills_and_a_database_restart(own_pg: PgCluster, tmp_path: Path) -> None:
    machine_started = machine_server_started()
    path = write_tiny_study(
        tmp_path, extra_module=SLOW_EPOCHS, algorithm="hyperband", max_trials=100, max_epochs=9, lease_seconds=4
    )
    text = path.read_text().replace("max_trials = 100\n", "max_retries = 20\nmax_consecutive_failures = 50\n")
    path.write_text(text.replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:SlowEpochs" }]'))
    env = {**os.environ, "HPSEARCH_DB": own_pg.url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base = [sys.executable, "-m", "hpsearch"]
    created = subprocess.run(
        [*base, "study", "create", str(path), "--artifacts", str(tmp_path / "art")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert created.returncode == 0, created.stderr
    chaos = Chaos(own_pg, tmp_path)
    try:
        kills = run_chaos(chaos)
    finally:
        chaos.stop_all()
    # The machine's server was not restarted (nor stopped) by any of this.
    if machine_started is not None:
        assert machine_server_started() == machine_started, "the machine's PostgreSQL server was restarted"
    assert kills == {"worker": 5, "pause": 1, "coordinator": 2, "postgres": 1}, "the study ended before the chaos did"

    url = own_pg.url
    study = query(url, "SELECT state, message FROM studies WHERE name = 'tiny'")[0]
    assert study.state == "COMPLETED", study
    trials = query(url, "SELECT id, number, state, error, objective, retries FROM trials ORDER BY number")
    assert len(trials) == 23  # Keras Tuner's Hyperband(max_epochs=9, factor=3) runs 23 trials
    assert all(t.state == "COMPLETED" or (t.state == "FAILED" and t.error) for t in trials), trials
    duplicates = query(
        url, "SELECT trial_id, epoch, name FROM trial_metrics GROUP BY trial_id, epoch, name HAVING COUNT(*) > 1"
    )
    assert duplicates == []
    by_trial = attempts_by_trial(url)
    resumed = 0
    for trial in trials:
        rows = by_trial[trial.id]
        assert sum(r.outcome == "COMPLETED" for r in rows) == (trial.state == "COMPLETED")  # exactly once
        for before, after in itertools.pairwise(rows):
            # A re-run attempt starts from the last checkpoint the attempt before it left (or where that
            # one started, when it checkpointed nothing).
            expected = before.last_checkpoint_epoch if before.last_checkpoint_epoch is not None else before.start_epoch
            assert after.start_epoch == expected, (trial.number, rows)
            resumed += before.last_checkpoint_epoch is not None
    # Every worker killed after its trial checkpointed: that attempt was lost, not completed, and the next
    # one resumed from its checkpoint (at least the epoch seen before the kill).
    assert chaos.targeted, "no worker was killed after a checkpoint"
    for kill in chaos.targeted:
        numbered = {r.attempt: r for r in by_trial[kill.trial_id]}
        assert numbered[kill.attempt].outcome != "COMPLETED", (kill, numbered)
        assert kill.attempt + 1 in numbered, (kill, numbered)
        assert numbered[kill.attempt + 1].start_epoch >= kill.epoch >= 1, (kill, numbered)
    # The paused worker's attempt was taken over, never completed, and its late writes changed nothing.
    assert chaos.paused, "no worker was paused past its lease"
    for pause in chaos.paused:
        numbered = {r.attempt: r for r in by_trial[pause.trial_id]}
        assert numbered[pause.attempt].outcome != "COMPLETED" and pause.attempt + 1 in numbered, (pause, numbered)
    # Every COMPLETED trial's checkpoint row names an existing file with the recorded sha256.
    checkpoints = {
        row.trial_id: row for row in query(url, "SELECT trial_id, uri, sha256 FROM artifacts WHERE kind = 'checkpoint'")
    }
    for trial in trials:
        if trial.state == "COMPLETED":
            row = checkpoints[trial.id]
            assert Path(row.uri).is_file(), (trial.number, row.uri)
            assert hashlib.sha256(Path(row.uri).read_bytes()).hexdigest() == row.sha256, (trial.number, row.uri)
    # The worker an hour behind completed trials of its own.
    skewed = query(
        url,
        "SELECT COUNT(*) FROM trial_attempts a JOIN workers w ON w.id = a.worker_id "
        "WHERE w.pid = :pid AND a.outcome = 'COMPLETED'",
        pid=chaos.skewed.pid,
    )
    assert skewed[0][0] >= 1, "the worker with a skewed clock completed no trial"
    completed = [t.objective for t in trials if t.state == "COMPLETED" and t.objective is not None]
    best = subprocess.run([*base, "best", "tiny", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert json.loads(best.stdout)["best"]["objective"] == max(completed)
    print(
        f"trials: {Counter(t.state for t in trials)}; attempts: {sum(map(len, by_trial.values()))}; "
        f"re-run attempts resumed from a checkpoint: {resumed}"
    )
