"""Concurrent check-then-insert writes (issue 24): two `study create` of one name, two `promote` of one study
and two schema creations on one fresh database, forced into the interleaving that used to fail.

How the interleaving is forced, without sleeping: a third session holds a lock that both callers need
before they can read (PostgreSQL: an ACCESS EXCLUSIVE lock on the table, or an uncommitted CREATE TABLE of
the schema's first table; SQLite: the write lock), the test waits until the database shows both callers
blocked on it (PostgreSQL: ``pg_stat_activity``; SQLite: both have issued ``BEGIN IMMEDIATE``), then
releases it. Without serialisation both callers then read "none" and both insert, and one fails on a unique
constraint; with it the second waits for the first's commit and finds its row.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import NewFinalJob, NewStudy, Store, open_store
from hpsearch.store.db import head_revision, make_engine

from ..conftest import add_study
from .lock_holder import lock_held


def _new_study(name: str = "raced") -> NewStudy:
    return NewStudy(
        name=name,
        objective_name="val_accuracy",
        direction="max",
        algorithm="random",
        max_trials=10,
        max_epochs=3,
        seed=0,
        spec={"search": {"max_trials": 10}, "run": {"lease_seconds": 60.0}},
        space={"space": [], "values": {}},
        source_path="/x/raced.toml",
        base_dir="/x",
        artifact_root="/x/a",
    )


@contextmanager
def _sqlite_writes_started(stores: list[Store]) -> Iterator[threading.Semaphore]:
    """A semaphore released each time one of ``stores`` issues BEGIN IMMEDIATE (it then waits for the lock)."""
    begun = threading.Semaphore(0)

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            begun.release()

    for store in stores:
        sa.event.listen(store.engine, "before_cursor_execute", on_execute)
    try:
        yield begun
    finally:
        for store in stores:
            sa.event.remove(store.engine, "before_cursor_execute", on_execute)


def _race(url: str, table: str, stores: list[Store], call: Callable[[Store], Any]) -> list[Any]:
    """Run ``call`` on each store in its own thread, both released together from behind a third session's
    lock on ``table``; returns each thread's result (or the exception it raised)."""
    results: list[Any] = [None] * len(stores)

    def run(index: int) -> None:
        try:
            results[index] = call(stores[index])
        except Exception as exc:  # reported by the assertions, not lost in the thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with _sqlite_writes_started(stores) as begun:
            for thread in threads:
                thread.start()
            for _ in threads:
                assert begun.acquire(timeout=60), "a caller never began its transaction"
            holder.execute("ROLLBACK")
        holder.close()
    else:
        with lock_held(url, f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", waiters=len(threads)):
            for thread in threads:
                thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    return results


def test_two_creations_of_one_study_at_once_both_succeed_with_one_study(db_url: str) -> None:
    stores = [open_store(db_url, create=True), open_store(db_url)]
    try:
        results = _race(db_url, "studies", stores, lambda store: store.create_study(_new_study()))
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        assert sorted(created for _, created in results) == [False, True]
        assert results[0][0].id == results[1][0].id
        assert [s.name for s in stores[0].studies()] == ["raced"]
    finally:
        for store in stores:
            store.engine.dispose()


def test_two_promotions_of_one_study_at_once_both_succeed_with_one_job(db_url: str) -> None:
    stores = [open_store(db_url, create=True), open_store(db_url)]
    try:
        study = add_study(stores[0])
        stores[0].add_trials(study, [NewTrial({"i": 0}, 1)])
        trial = stores[0].trial(study.id, 0)
        new = NewFinalJob(study_id=study.id, trial_id=trial.id, params={}, train_on="train", epochs=5, seed=1)
        results = _race(db_url, "final_jobs", stores, lambda store: store.create_final_job(new))
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        assert sorted(created for _, created in results) == [False, True]
        assert results[0][0].id == results[1][0].id
        assert [(j.number, j.state) for j in stores[0].final_jobs(study.id)] == [(1, "QUEUED")]
    finally:
        for store in stores:
            store.engine.dispose()


# Each process prints "begin" when SQLite starts its first statement that needs the file's lock (switching a
# fresh file to WAL, or BEGIN IMMEDIATE): from then on it waits for the holder. Then it creates the schema as
# `hpsearch run` and `study create` do.
_CREATE_SCHEMA = """
import sqlite3.dbapi2
import sys

_connect = sqlite3.dbapi2.connect

def _traced(statement):
    if ("journal_mode" in statement or statement.startswith("BEGIN IMMEDIATE")) and not getattr(sys, "_begun", 0):
        sys._begun = 1
        print("begin", flush=True)

def connect(*args, **kwargs):
    connection = _connect(*args, **kwargs)
    connection.set_trace_callback(_traced)
    return connection

sqlite3.dbapi2.connect = connect

from hpsearch.store import open_store
open_store(sys.argv[1], create=True).engine.dispose()
print("done", flush=True)
"""


def test_two_schema_creations_on_a_fresh_database_at_once_both_succeed_with_one_schema(db_url: str) -> None:
    command = [sys.executable, "-c", _CREATE_SCHEMA, db_url]
    if db_url.startswith("sqlite"):
        # A fresh file (not yet in WAL) whose lock another connection holds: the old code's journal-mode
        # switch failed at once with "database is locked".
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "begin"
        holder.execute("ROLLBACK")
        holder.close()
    else:
        # The schema's first table, created and not committed: both processes' CREATE TABLE of it waits on the
        # catalog's unique index (where the old code's loser failed, on pg_type_typname_nsp_index).
        with lock_held(db_url, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)", waiters=2):
            procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outcomes]
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            assert connection.scalars(sa.text("SELECT version_num FROM alembic_version")).all() == [head_revision()]
        assert "studies" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
