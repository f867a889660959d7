"""The three ways to reach the database, and the one retry mechanism.

- :meth:`Database.session`: an ORM session in one transaction, for set-up and the rarer writes;
- :meth:`Database.transaction`: a plain connection in one transaction running prebuilt statements, for the
  writes that run per trial or per tick (claim, finish, queueing), where the ORM's unit of work was most of
  the client CPU;
- :meth:`Database.autocommit`: for statements each atomic on its own (the reads a tick or an idle worker
  repeats, the coordinator's lease, a heartbeat, and on PostgreSQL an epoch report and a finish, each one
  statement): on PostgreSQL each commits by itself, one round trip instead of three with BEGIN and COMMIT.

Retries: :func:`retrying` is applied by name to the methods the worker and the coordinator call, each one
transaction (or statements each atomic on their own) and safe to repeat. With ``retry_seconds`` a lost
connection is retried with backoff for that long, so a database restart pauses them instead of ending them.
A retried method that calls another retried method does not nest a second retry loop.

Example::

    class Jobs(Database):
        @retrying
        def ping(self) -> int:
            with self.autocommit() as connection:
                return connection.scalar(select(1))
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from hpsearch.errors import StoreError
from hpsearch.store.db import connection_error
from hpsearch.store.statements import db_now
from hpsearch.store.urls import sqlite_file

log = logging.getLogger("hpsearch.store")

P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """An engine and the three connection paths every concern of the store shares.

    Example: ``Database(make_engine("sqlite://")).session()`` opens one ORM transaction."""

    def __init__(self, engine: Engine, retry_seconds: float = 0.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self._retry_depth = threading.local()
        # An SQLite file's identity (device, inode) when it was opened: see check_database_file.
        file = sqlite_file(engine.url.render_as_string(hide_password=False))
        self._file = file.absolute() if file is not None else None
        self._file_identity = _identity(self._file)

    def check_database_file(self) -> None:
        """Raise a one-line StoreError when the SQLite file this store opened was deleted or replaced.

        Why: connections already open keep writing into a deleted file's inode and every write succeeds, so
        a run whose database was deleted (or moved, or replaced by another file) ended with exit 0 and a
        printed best trial, and nothing was left of it. The coordinator loop calls this every tick (one
        ``stat``); nothing to check for PostgreSQL or an in-memory database.
        Example: ``store.check_database_file()`` after ``rm hpsearch.db`` raises."""
        if self._file is None:
            return
        now = _identity(self._file)
        if self._file_identity is None:  # created after this store was made: this is the file
            self._file_identity = now
            return
        if now != self._file_identity:
            raise StoreError(
                f"database {self._file}",
                "the file was deleted or replaced while hpsearch was running; results from then on were lost"
                " (restore the file, or start again with a new database)",
            )

    def now(self) -> datetime:
        """The database server's clock (naive UTC): what a time read from the database is compared with, so
        that a machine whose clock is off never decides a lease or a study's wall time.
        Example: ``store.now() - study.created_at`` is how long the study has existed."""
        with self.transaction() as connection:
            return db_now(connection)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; database errors become a one-line StoreError with the password masked."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a plain connection, no ORM session (prebuilt statements)."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """For statements each atomic on their own: each commits by itself on PostgreSQL (one round trip);
        SQLite, in-process, runs them in a transaction as usual."""
        if self.engine.dialect.name != "postgresql":
            with self.transaction() as connection:
                yield connection
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                yield connection
        except DBAPIError as exc:
            raise connection_error(exc, self.engine.url) from exc


def _identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of a file, None when there is no such file."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def lost_connection(exc: BaseException) -> bool:
    """Whether a StoreError came from a dropped or unreachable connection (worth retrying)."""
    cause = exc.__cause__
    return isinstance(cause, OperationalError | InterfaceError) or bool(getattr(cause, "connection_invalidated", False))


def retrying(method: Callable[P, T]) -> Callable[P, T]:
    """Retry ``method`` (of a :class:`Database`) on a lost connection for the instance's ``retry_seconds``,
    with backoff from 0.25 s to 5 s. Only for methods safe to repeat; an inner retried call runs once.

    Example::

        @retrying
        def heartbeat(self, trial_id: int, worker_id: int, lease_seconds: float) -> str: ...
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        assert isinstance(self, Database)
        depth = self._retry_depth
        if getattr(depth, "inside", False):  # the outer call retries the whole of it
            return method(*args, **kwargs)
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.25
        depth.inside = True
        try:
            while True:
                try:
                    return method(*args, **kwargs)
                except StoreError as exc:
                    if not lost_connection(exc) or time.monotonic() + delay > deadline:
                        raise
                    log.warning("database unavailable (%s); retrying %s in %.1fs", exc.what, method.__name__, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            depth.inside = False

    wrapper.retried = True  # type: ignore[attr-defined]  # the conformance suite lists the retried methods
    return wrapper
