"""Forcing two callers into one interleaving on PostgreSQL without sleeping: a third session takes a lock
both callers need (a table lock, an uncommitted CREATE TABLE of the schema's first table), the callers start,
and the lock is let go only once the server shows them both waiting for it (``pg_stat_activity``). Used by
tests/store/test_races.py and tests/test_cli_races.py.

>>> with lock_held(url, "LOCK TABLE studies IN ACCESS EXCLUSIVE MODE", waiters=2):  # doctest: +SKIP
...     start_both_callers()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until ``condition`` holds (a wait for a state, not an assertion about time)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def blocked_on_locks(url: str) -> int:
    """How many sessions of this PostgreSQL database wait for a lock (heavyweight: table, advisory, xact)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                )
            )
    finally:
        engine.dispose()


@contextmanager
def lock_held(url: str, statement: str, waiters: int = 2, limit: float = 60.0) -> Iterator[None]:
    """A third session runs ``statement`` in a transaction it keeps open while the body starts the callers;
    on leaving, it waits until ``waiters`` sessions wait for a lock, then rolls back, releasing them together."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder:
            holder.execute(sa.text(statement))
            yield
            until(lambda: blocked_on_locks(url) >= waiters, f"{waiters} callers to wait for the lock", limit)
            holder.rollback()
    finally:
        engine.dispose()
