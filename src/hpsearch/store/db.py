"""Engines, database URLs (never printed with their password) and the schema version."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from hpsearch.errors import StoreError, UsageError
from hpsearch.store.urls import normalise_url

DEFAULT_URL = "sqlite:///hpsearch.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str | None) -> str:
    """``--db`` wins, then ``HPSEARCH_DB``, then ``hpsearch.db`` in the working directory; a plain path and
    ``postgres://`` are accepted, an SQLite path is made absolute (see :mod:`hpsearch.store.urls`)."""
    return normalise_url(url or os.environ.get("HPSEARCH_DB") or DEFAULT_URL)


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError("--db", f"malformed database URL {mask_url(url)!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError("--db", f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    return parsed


# libpq takes a password in the query string (``?password=``) and in a key/value DSN (``password=x``), as
# well as in the user-info part; every form is masked. A quoted DSN value ('it''s') runs to its closing quote.
_QUERY_PASSWORD = re.compile(r"(?i)([?&;]password=)[^&#]*")
_DSN_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")


def _query_passwords(url: URL) -> list[str]:
    return [
        value
        for key, values in url.query.items()
        if key.lower() == "password"
        for value in ((values,) if isinstance(values, str) else values)
        if value
    ]


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, also one given as ``?password=`` and in URLs SQLAlchemy
    cannot parse (a libpq DSN such as ``host=h password=x``).

    >>> mask_url("postgresql://bob@db/x?password=s3cret&sslmode=require")
    'postgresql://bob@db/x?password=***&sslmode=require'
    """
    if isinstance(url, URL):
        rendered = url.render_as_string(hide_password=True)
    else:
        try:
            rendered = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            rendered = re.sub(r":[^:@/]*@", ":***@", url)
            return _DSN_PASSWORD.sub(r"\1***", _QUERY_PASSWORD.sub(r"\1***", rendered))
    return _QUERY_PASSWORD.sub(r"\1***", rendered)


def scrub(message: str, url: str | URL) -> str:
    """Remove the URL's passwords (user info and ``?password=``) from a message (a driver error may quote the
    connection string), and any ``password=`` a libpq message spells out.

    >>> scrub("bad password=s3cret for bob", "postgresql://bob@db/x?password=s3cret")
    'bad password=*** for bob'
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        passwords = [str(parsed.password)] if parsed.password else []
        passwords += _query_passwords(parsed)
    except ArgumentError:
        passwords = []
    # Longest first, so that a password containing another is masked whole.
    for password in sorted(set(passwords), key=len, reverse=True):
        # Whole tokens only: a short password must not garble the words around it.
        message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(password)}(?![A-Za-z0-9])", "***", message)
    return _DSN_PASSWORD.sub(r"\1***", message)


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 60})
            _configure_sqlite(engine)
        else:
            # No pre-ping (a round trip per transaction): a connection the server dropped fails its first
            # statement, SQLAlchemy then discards the pool, and Store methods retry on a fresh connection.
            engine = create_engine(
                parsed,
                pool_size=2,
                max_overflow=4,
                connect_args={"connect_timeout": 10, "application_name": "hpsearch"},
            )
    except (NoSuchModuleError, ImportError) as exc:
        raise UsageError("--db", f"no driver for {parsed.drivername}: {exc}") from None
    return engine


def make_readonly_engine(url: str, application_name: str = "hpsearch-readonly") -> Engine:
    """An engine that cannot write (the dashboard's). PostgreSQL: every transaction, autocommit ones too, is
    READ ONLY (``default_transaction_read_only``, as the analyst role in docs/schema.md). SQLite: ``PRAGMA
    query_only`` on each connection, and deferred transactions, so a reader never takes the write lock that
    workers and coordinators wait for.

    Example: ``Store(make_readonly_engine("sqlite:///hpsearch.db")).studies()``; any write raises.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        options = {"connect_timeout": 10, "application_name": application_name}
        options["options"] = "-c default_transaction_read_only=on"
        try:
            return create_engine(parsed, pool_size=4, max_overflow=4, connect_args=options)
        except (NoSuchModuleError, ImportError) as exc:
            raise UsageError("--db", f"no driver for {parsed.drivername}: {exc}") from None
    engine = create_engine(parsed, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")  # deferred: a consistent snapshot, no write lock

    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so that the BEGIN below is the one that runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            _set_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Every transaction takes the write lock up front: a claim is then atomic across processes,
        # and no reader-turned-writer deadlocks on a lock upgrade (SQLite answers those with BUSY at once).
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _set_wal(cursor: Any, patience: float = 60.0) -> None:
    """Switch the file to WAL, waiting up to ``patience`` seconds (the busy timeout) for other connections.

    Why a loop: SQLite answers a journal-mode change that meets another connection's lock with "database is
    locked" at once, without calling the busy handler, so two processes opening one fresh file together (two
    `hpsearch run`) had one of them fail. Once the file is in WAL the statement takes no lock and passes."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _alembic_config(engine_connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = engine_connection
    return config


def connection_error(exc: Exception, url: str | URL) -> StoreError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    return StoreError(mask_url(url), f"cannot use the database: {scrub(first, url)}")


def schema_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise connection_error(exc, engine.url) from None


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> str:
    """Create or migrate the schema to this version's head; returns the revision. Two processes upgrading
    one database at once (two `hpsearch run` on a fresh PostgreSQL database) take turns: the second waits
    for the first's commit, then finds the schema at head and does nothing."""
    from hpsearch.store.locks import serialize

    check_not_newer(engine)
    try:
        with engine.begin() as connection:
            serialize(connection, "schema")  # PostgreSQL DDL is transactional: the lock covers the whole upgrade
            command.upgrade(_alembic_config(connection), "head")
    except DBAPIError as exc:
        raise connection_error(exc, engine.url) from None
    return head_revision()


def check_not_newer(engine: Engine) -> str | None:
    current = schema_revision(engine)
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            mask_url(engine.url), f"schema revision {current} is newer than this hpsearch; upgrade hpsearch"
        )
    return current


def require_schema(engine: Engine) -> None:
    """Commands that only read or run studies need the schema at this version's head (and an SQLite file
    that exists: connecting would create an empty one)."""
    database = engine.url.database
    if (
        engine.dialect.name == "sqlite"
        and database not in (None, "", ":memory:")
        and not engine.url.query.get("uri")
        and not Path(database).exists()
    ):
        # Exit 2 and the file's absolute path: usually a forgotten --db or another working directory, not a
        # missing schema (`hpsearch run` and `study create` make the file).
        raise UsageError(
            str(Path(database).absolute()),
            "no such database file (give --db or set HPSEARCH_DB; `hpsearch run` or `study create` makes one)",
        )
    current = check_not_newer(engine)
    if current is None:  # an empty database (PostgreSQL's are made by the DBA): no study was ever created in it
        raise UsageError(
            mask_url(engine.url), "no hpsearch tables in this database (`hpsearch run` or `study create` makes them)"
        )
    if current != head_revision():
        raise StoreError(mask_url(engine.url), f"database is at schema revision {current}; run `hpsearch db upgrade`")


def ping(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise connection_error(exc, engine.url) from None
