"""A network partition (issue 24): a worker in a network namespace of its own, joined to the database by a veth
pair, is cut off mid-trial past its lease and then reconnected. Nothing is lost or written twice: another
worker takes the trial over from its checkpoint, the cut-off worker's late writes are refused, and every
trial completes exactly once with checkpoint rows naming files that exist with the recorded sha256.

Opt-in with the chaos test (``python -m pytest -m chaos tests/test_partition.py``). It needs root and a kernel
that allows network namespaces and veth pairs; where either is missing it skips with the command's own error.
It runs on a PostgreSQL cluster of its own (tests/pg_cluster.py), listening also on the veth's host address;
the machine's server is never touched. The cut is made with ``ip link set <host side> down``: packets are
dropped silently, as in a real partition, so the worker's statements hang rather than fail fast. No
assertion depends on timing: the test waits for states (a checkpoint, the lease's expiry, the takeover).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .conftest import write_tiny_study
from .pg_cluster import PgCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SLOW_EPOCHS = '''

import time as _time

import keras as _keras


class SlowEpochs(_keras.callbacks.Callback):
    """An epoch lasts long enough for the cut to land mid-trial."""

    def on_epoch_end(self, epoch, logs=None):
        _time.sleep(1.0)
'''
WAIT_S = 300.0


@dataclass(frozen=True)
class Namespace:
    """A network namespace ``name`` joined to this one by a veth pair: ``host_ip`` on ``host_link`` here,
    ``ns_ip`` inside."""

    name: str
    host_link: str
    host_ip: str
    ns_ip: str

    def cut(self) -> None:
        _ip("link", "set", self.host_link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.host_link, "up")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    """Make the namespace and its veth pair, or skip the test with the reason this machine gives."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (`ip netns add`); this test runs as a normal user")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make a network namespace")
    tag = os.getpid() % 100000
    octet = os.getpid() % 250 + 1
    ns = Namespace(f"hps{tag}", f"hps{tag}h", f"10.231.{octet}.1", f"10.231.{octet}.2")
    added = _ip("netns", "add", ns.name, check=False)
    if added.returncode != 0:
        pytest.skip(f"this machine does not allow network namespaces: `ip netns add` said {added.stderr.strip()!r}")
    try:
        veth = _ip("link", "add", ns.host_link, "type", "veth", "peer", "name", f"hps{tag}n", check=False)
        if veth.returncode != 0:
            pytest.skip(f"this machine does not allow veth pairs: `ip link add` said {veth.stderr.strip()!r}")
        _ip("link", "set", f"hps{tag}n", "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_link)
        _ip("link", "set", ns.host_link, "up")
        for args in (("addr", "add", f"{ns.ns_ip}/30", "dev", f"hps{tag}n"), ("link", "set", f"hps{tag}n", "up"),
                     ("link", "set", "lo", "up")):  # fmt: skip
            _ip("netns", "exec", ns.name, "ip", *args)
        yield ns
    finally:
        _ip("netns", "del", ns.name, check=False)  # deleting the namespace deletes the veth pair
        _ip("link", "del", ns.host_link, check=False)


def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def _until(condition: Callable[[], Any], what: str, limit: float = WAIT_S) -> Any:
    """Poll until ``condition`` returns something true, and return it (a wait for a state, not a timing)."""
    deadline = time.monotonic() + limit
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


# The cut-off worker's RUNNING trial whose open attempt has checkpointed and has epochs left to train.
CHECKPOINTED = """
SELECT t.id AS trial_id, a.attempt, a.last_checkpoint_epoch AS epoch
FROM trials t JOIN workers w ON w.id = t.worker_id
JOIN trial_attempts a ON a.trial_id = t.id AND a.ended_at IS NULL
WHERE t.state = 'RUNNING' AND w.pid = :pid AND a.last_checkpoint_epoch IS NOT NULL
  AND a.last_checkpoint_epoch < t.budget_epochs
"""
# Sessions from the namespace inside a transaction (holding locks the partition would keep held).
IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE client_addr = CAST(:ip AS inet) AND xact_start IS NOT NULL"
)


@pytest.mark.timeout(1500)
def test_a_worker_cut_off_past_its_lease_and_reconnected_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with network_namespace() as ns, running_cluster() as cluster:
        _listen_on(cluster, ns)
        _run_partition(cluster, ns, tmp_path)


def _listen_on(cluster: PgCluster, ns: Namespace) -> None:
    """The test's own server also listens on the veth's host address and trusts the namespace."""
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1,{ns.host_ip}'\n")
    with (cluster.data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {ns.ns_ip}/32 trust\n")
    cluster.restart()


def _run_partition(cluster: PgCluster, ns: Namespace, tmp_path: Path) -> None:
    url = cluster.url
    ns_url = url.replace("@127.0.0.1:", f"@{ns.host_ip}:")
    path = write_tiny_study(tmp_path, extra_module=SLOW_EPOCHS, max_trials=3, max_epochs=4, lease_seconds=4)
    text = path.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:SlowEpochs" }]')
    path.write_text(text.replace("max_epochs = 4\n", "max_epochs = 4\nmax_retries = 5\n"))
    env = {**os.environ, "HPSEARCH_DB": url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base = [sys.executable, "-m", "hpsearch"]
    art = tmp_path / "art"
    created = subprocess.run([*base, "study", "create", str(path), "--artifacts", str(art)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert created.returncode == 0, created.stderr
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, argv: list[str], db: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env={**env, "HPSEARCH_DB": db}, cwd=tmp_path, start_new_session=True,
                                stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip

    worker = [*base, "worker", "--study", "tiny", "--exit-when-done"]
    processes = {
        "coordinator": start("coordinator", [*base, "coordinator", "--exit-when-done", "--lease", "2"], url),
        "cut": start("cut", ["ip", "netns", "exec", ns.name, *worker], ns_url),
    }
    try:
        cut = processes["cut"]
        # 1. The namespaced worker has a trial mid-training with a checkpoint; frozen, with no transaction
        #    open (a partition inside one would keep its locks until TCP gives up), it is cut off.
        while True:
            found = _until(lambda: _query(url, CHECKPOINTED, pid=cut.pid), "a checkpointed trial in the namespace")[0]
            _signal_group(cut, signal.SIGSTOP)
            _until(lambda: _query(url, IN_TRANSACTION, ip=ns.ns_ip)[0][0] == 0 or _thaw(cut), "an idle moment")
            still = [r for r in _query(url, CHECKPOINTED, pid=cut.pid) if r.trial_id == found.trial_id]
            if still and still[0].attempt == found.attempt and _query(url, IN_TRANSACTION, ip=ns.ns_ip)[0][0] == 0:
                break
            _signal_group(cut, signal.SIGCONT)
        ns.cut()
        _signal_group(cut, signal.SIGCONT)
        # 2. Past its lease: the coordinator ends its attempt and another worker takes the trial over and
        #    checkpoints (or completes) it, while the cut-off worker keeps training and reporting into the void.
        processes["other"] = start("other", worker, url)
        taken = """SELECT a.attempt, a.last_checkpoint_epoch, t.state FROM trial_attempts a JOIN trials t
                   ON t.id = a.trial_id WHERE a.trial_id = :trial AND a.attempt > :attempt
                   AND (a.last_checkpoint_epoch IS NOT NULL OR t.state = 'COMPLETED')"""
        _until(lambda: _query(url, taken, trial=found.trial_id, attempt=found.attempt), "the takeover")
        # 3. Reconnected: its late writes reach the server.
        ns.reconnect()
        for name, process in processes.items():
            assert process.wait(timeout=WAIT_S) == 0, (name, (logs / f"{name}.log").read_text()[-3000:])
    finally:
        for process in processes.values():
            _signal_group(process, signal.SIGCONT)
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _check_nothing_lost_or_doubled(url, found.trial_id, found.attempt, found.epoch, art)


def _thaw(process: subprocess.Popen[bytes]) -> bool:
    """Let a frozen worker finish its open transaction, then freeze it again (False: keep waiting)."""
    _signal_group(process, signal.SIGCONT)
    time.sleep(0.05)
    _signal_group(process, signal.SIGSTOP)
    return False


def _check_nothing_lost_or_doubled(url: str, trial_id: int, attempt: int, epoch: int, art: Path) -> None:
    assert _query(url, "SELECT state FROM studies WHERE name = 'tiny'")[0].state == "COMPLETED"
    trials = _query(url, "SELECT id, number, state, epochs_done, budget_epochs FROM trials ORDER BY number")
    assert [t.state for t in trials] == ["COMPLETED"] * 3, trials
    attempts = _query(
        url, "SELECT trial_id, attempt, start_epoch, outcome FROM trial_attempts ORDER BY trial_id, attempt"
    )
    for trial in trials:
        outcomes = [a.outcome for a in attempts if a.trial_id == trial.id]
        assert outcomes.count("COMPLETED") == 1, (trial, outcomes)  # completed exactly once
        # Every epoch of the budget has its metrics, once each (nothing lost, nothing written twice).
        epochs = _query(url, "SELECT epoch, name, count(*) AS n FROM trial_metrics WHERE trial_id = :t "
                        "GROUP BY epoch, name", t=trial.id)  # fmt: skip
        assert {e.epoch for e in epochs} == set(range(1, trial.budget_epochs + 1)), (trial, epochs)
        assert all(e.n == 1 for e in epochs)
    cut_off = {a.attempt: a for a in attempts if a.trial_id == trial_id}
    assert cut_off[attempt].outcome != "COMPLETED", cut_off  # the cut-off attempt did not finish the trial
    assert cut_off[attempt + 1].start_epoch >= epoch >= 1, cut_off  # its successor resumed from its checkpoint
    checkpoints = _query(url, "SELECT a.uri, a.sha256 FROM artifacts a JOIN trials t ON t.id = a.trial_id "
                         "WHERE t.state = 'COMPLETED' AND a.kind = 'checkpoint'")  # fmt: skip
    assert checkpoints
    for row in checkpoints:
        file = Path(row.uri)
        assert file.is_file() and file.resolve().is_relative_to(art.resolve()), row
        assert hashlib.sha256(file.read_bytes()).hexdigest() == row.sha256, row
