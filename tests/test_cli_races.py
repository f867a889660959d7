"""Two `hpsearch study create` of one study on one fresh database at once (issue 24), end to end: both exit 0,
one says "created", the other "already exists", and the database holds one schema and one study.

PostgreSQL: both processes are held at the schema's first table (a third session created it and has not
committed), and released once the server shows both waiting; the schema and the study row are then made
under advisory locks (tests/store/test_races.py forces each step on its own). SQLite: a third connection
holds the fresh file's lock until both processes have opened the file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.store import open_store

from .conftest import write_tiny_study
from .store.lock_holder import lock_held, until

pytestmark = pytest.mark.slow


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (True once it has exited: it will not open it any more)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())
    except (FileNotFoundError, PermissionError):  # exited (then its result says why) or not ours
        return True


def test_two_study_creations_at_once_on_a_fresh_database_both_exit_0_with_one_study(
    db_url: str, tmp_path: Path
) -> None:
    path = write_tiny_study(tmp_path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HPSEARCH_DB": db_url}
    command = [sys.executable, "-m", "hpsearch", "study", "create", str(path), "--artifacts", str(tmp_path / "art")]

    def start() -> subprocess.Popen[str]:
        pipe = subprocess.PIPE
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=pipe, stderr=pipe, text=True)

    if db_url.startswith("sqlite"):
        file = Path(db_url.removeprefix("sqlite:///"))
        holder = sqlite3.connect(file, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        procs = [start(), start()]
        until(lambda: all(_has_open(p.pid, file) for p in procs), "both processes to open the file", limit=300)
        holder.execute("ROLLBACK")
        holder.close()
    else:
        # Each process starts Python and imports hpsearch before it reaches the lock: up to minutes under load.
        with lock_held(db_url, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)", 2, limit=300):
            procs = [start(), start()]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    said = sorted("created" if "tiny created" in out else "exists" if "already exists" in out else out
                  for out, _ in results)  # fmt: skip
    assert said == ["created", "exists"]
    store = open_store(db_url)
    try:
        assert [s.name for s in store.studies()] == ["tiny"]
    finally:
        store.engine.dispose()
