"""The test run must leave the machine's PostgreSQL server alone: no restart, no configuration reload.

tests/conftest.py reads the server's state (``pg_postmaster_start_time()``, ``pg_conf_load_time()``) when the
session starts and again when it ends, and turns the run's exit status to "failed" with one line when either
changed. Under pytest-xdist only the controller process does this, so the check spans every worker's tests
(a worker's own session would miss a restart made by another worker before it started). Tests needing a
restart use their own cluster (tests/pg_cluster.py); this check is what catches one that forgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

SERVER_STATE = "SELECT pg_postmaster_start_time()::text, pg_conf_load_time()::text"


@dataclass(frozen=True)
class ServerState:
    """When the server last started and last (re)loaded its configuration, as the server reports them."""

    started: str
    conf_loaded: str


def read_server_state(url: str) -> ServerState | None:
    """The server's state, or None when it cannot be reached (then the PostgreSQL half of the suite is
    skipped or, with HPSEARCH_REQUIRE_PG=1, fails on its own)."""
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            started, conf_loaded = connection.execute(sa.text(SERVER_STATE)).one()
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()
    return ServerState(started=str(started), conf_loaded=str(conf_loaded))


def server_change(url: str, before: ServerState | None, after: ServerState | None) -> str | None:
    """One line saying how the server changed between two readings, or None when it did not.

    >>> s = ServerState("2026-01-01 10:00:00+00", "2026-01-01 10:00:00+00")
    >>> server_change("pg", s, s) is None
    True
    >>> later = ServerState("2026-01-01 11:00:00+00", "2026-01-01 11:00:00+00")
    >>> server_change("pg", s, later)[:50]
    'the PostgreSQL server at pg was restarted during t'
    """
    where = sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    if before is None:
        return None  # not reachable at the start: nothing to compare with
    if after is None:
        return f"the PostgreSQL server at {where} was reachable when the test run started and is not at its end"
    if after.started != before.started:
        return (
            f"the PostgreSQL server at {where} was restarted during the test run "
            f"(started {before.started}, now {after.started})"
        )
    if after.conf_loaded != before.conf_loaded:
        return (
            f"the PostgreSQL server at {where} reloaded its configuration during the test run "
            f"(loaded {before.conf_loaded}, now {after.conf_loaded})"
        )
    return None
