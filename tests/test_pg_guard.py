"""The run-wide check of the machine's PostgreSQL server (tests/pg_guard.py, wired in tests/conftest.py)
notices a restart and a configuration reload: shown on a cluster of the test's own, which it restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .conftest import REPO
from .pg_cluster import running_cluster
from .pg_guard import ServerState, read_server_state, server_change


def test_server_check_notices_a_restart_and_a_reload() -> None:
    with running_cluster() as cluster:
        before = read_server_state(cluster.url)
        assert before is not None
        assert server_change(cluster.url, before, read_server_state(cluster.url)) is None

        engine = sa.create_engine(cluster.url, poolclass=NullPool)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_reload_conf()"))
        engine.dispose()
        # The postmaster handles the reload signal on its own schedule: wait for it (no timing assertion).
        deadline = time.monotonic() + 60
        reloaded = read_server_state(cluster.url)
        while reloaded == before and time.monotonic() < deadline:
            time.sleep(0.1)
            reloaded = read_server_state(cluster.url)
        change = server_change(cluster.url, before, reloaded)
        assert change is not None and "reloaded its configuration" in change

        cluster.restart()
        change = server_change(cluster.url, before, read_server_state(cluster.url))
        assert change is not None and "was restarted during the test run" in change

        cluster.stop()
        assert read_server_state(cluster.url) is None
        change = server_change(cluster.url, before, None)
        assert change is not None and "is not at its end" in change


def test_server_check_has_nothing_to_compare_when_the_server_was_down_at_the_start() -> None:
    assert server_change("postgresql://x", None, ServerState("a", "b")) is None


RELOADING_TEST = """
import os
import time

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.pg_guard import read_server_state


def test_reloads_the_server():
    url = os.environ["HPSEARCH_TEST_PG"]
    before = read_server_state(url)
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_reload_conf()"))
    engine.dispose()
    deadline = time.monotonic() + 60
    while read_server_state(url) == before and time.monotonic() < deadline:
        time.sleep(0.1)
"""


@pytest.mark.slow  # whole pytest runs, each with a cluster of its own
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_run_that_reloads_the_server_fails(tmp_path: Path, workers: str) -> None:
    """A whole pytest run, serial and under xdist, whose only test passes but reloads the server it is
    pointed at (a cluster of this test's own): the run exits 1 and says why."""
    (tmp_path / "test_reload.py").write_text(RELOADING_TEST)
    with running_cluster() as cluster:
        env = {**os.environ, "HPSEARCH_TEST_PG": cluster.url}
        command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-n", workers]
        done = subprocess.run(
            [*command, str(tmp_path / "test_reload.py")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "FAILED (server check): the PostgreSQL server at" in done.stdout
    assert "reloaded its configuration during the test run" in done.stdout
