"""Serialising the few check-then-insert writes that two processes may run at once.

``study create`` (find the study by name, else insert it), ``promote`` (find the study's job, else insert
job ``max(number) + 1``) and the schema's creation each read, decide and write. Under PostgreSQL's READ
COMMITTED two callers both read "none" and both insert: one fails on a unique constraint (or, creating the
schema, on ``pg_type_typname_nsp_index``). :func:`serialize` makes the second wait for the first to commit,
then read what the first wrote.

Why an advisory lock and not a row lock or ``INSERT ... ON CONFLICT``: when the row does not exist yet
there is nothing to lock, the schema (before its first table) has no row at all, and ``max(number) + 1`` is
not a conflict a unique index can resolve. A transaction-scoped advisory lock needs no row, ends with the
transaction (a crashed caller cannot leave it held), and locks nothing any other statement waits for.

SQLite needs nothing more: every hpsearch transaction there starts with ``BEGIN IMMEDIATE`` (see
:func:`hpsearch.store.db.make_engine`), which already serialises writers across processes.

Example::

    with engine.begin() as connection:
        serialize(connection, "study", "mnist")
        ...  # read, then insert: no other serialize(connection, "study", "mnist") runs meanwhile
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, text

_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def lock_key(*parts: object) -> int:
    """A stable signed 64-bit key for ``parts`` (the same in every process and version, unlike ``hash``).

    >>> lock_key("study", "mnist") == lock_key("study", "mnist") != lock_key("study", "mnist2")
    True
    """
    digest = hashlib.sha256("\x1f".join(["hpsearch", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def serialize(connection: Connection, *parts: object) -> None:
    """Wait until no other transaction holds the lock named by ``parts``, then hold it until this transaction
    ends (PostgreSQL; a no-op on SQLite, whose transactions are already serialised)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_ADVISORY_XACT_LOCK, {"key": lock_key(*parts)})
