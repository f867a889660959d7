"""Losing the database silently (issue 24): the SQLite file deleted while `hpsearch run` runs must fail the
run loudly (exit 1, one line), not end with exit 0 and a best trial that nothing recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.control.coordinator import Coordinator
from hpsearch.errors import StoreError
from hpsearch.store import Store, open_store
from hpsearch.store.urls import sqlite_file

from ..conftest import add_study, write_tiny_study
from ..test_cli import hpsearch

# Deletes the run's SQLite file from inside the first trial, after its first epoch: the deletion happens
# while the run is certainly under way, with no sleep to time it.
DELETES_THE_DATABASE = """

import keras as _keras


class DeleteTheDatabase(_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        path = os.environ["HPSEARCH_DB"].removeprefix("sqlite:///")
        if os.path.exists(path):
            os.remove(path)
"""


def _sqlite_only(db_url: str) -> Path:
    path = sqlite_file(db_url)
    if path is None:
        pytest.skip("a PostgreSQL database has no file to lose")
    return path


def test_the_coordinator_stops_when_its_sqlite_file_is_deleted_or_replaced(store: Store, db_url: str) -> None:
    path = _sqlite_only(db_url)
    add_study(store)
    coordinator = Coordinator(store, ["demo"])
    coordinator.tick()  # the file is there: fine
    path.unlink()
    with pytest.raises(StoreError, match="deleted or replaced while hpsearch was running") as raised:
        coordinator.tick()
    assert raised.value.where == f"database {path}"
    open_store(db_url, create=True).engine.dispose()  # another database at the same path
    with pytest.raises(StoreError, match="deleted or replaced"):
        coordinator.tick()


@pytest.mark.slow
def test_run_fails_loudly_when_its_database_file_is_deleted(tmp_path: Path, db_url: str) -> None:
    _sqlite_only(db_url)
    study = write_tiny_study(tmp_path, extra_module=DELETES_THE_DATABASE, max_trials=4, max_epochs=3, workers=1)
    study.write_text(study.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:DeleteTheDatabase" }]'))
    result = hpsearch("run", str(study), cwd=tmp_path, db=db_url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "deleted or replaced while hpsearch was running" in lines[0], result.stderr
    assert "best trial" not in result.stdout
