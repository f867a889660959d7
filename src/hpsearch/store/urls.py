"""What a user may give as ``--db``, turned into the one URL every process and every message uses.

Accepted: a SQLAlchemy URL (``sqlite:///x.db``, ``postgresql+psycopg://...``), ``postgres://`` and
``postgresql://`` as Heroku, libpq and most hosting services spell them, and a plain file path
(``results/x.db``), which means an SQLite file.

>>> normalise_url("postgres://bob@db:5432/hp")
'postgresql+psycopg://bob@db:5432/hp'
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# psycopg (3) is the driver hpsearch installs; SQLAlchemy's default for a bare postgresql:// is psycopg2,
# which is not installed, so a URL copied from a hosting service would fail with "no driver".
_POSTGRES_SCHEME = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
# A plain path has no scheme and none of the characters of a URL's user info or a libpq DSN (``host=h
# password=x``): such a string stays a URL, to be refused as malformed, so that a password in it is never
# shown back as a "file name".
_NOT_A_PATH = re.compile(r"://|[:=@]")


def normalise_url(url: str) -> str:
    """The canonical form of a ``--db`` value: ``postgresql+psycopg://`` for PostgreSQL, and an SQLite URL
    with an absolute path, so that a message names the file wherever the command ran and worker processes
    open the same file whatever their working directory."""
    if _POSTGRES_SCHEME.match(url):
        return _POSTGRES_SCHEME.sub("postgresql+psycopg://", url, count=1)
    if not _NOT_A_PATH.search(url):
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # parse_url refuses it with one line
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or database in (None, "", ":memory:")
        or database.startswith("file:")
        or parsed.query.get("uri")
    ):
        return url
    return parsed.set(database=str(Path(database).expanduser().absolute())).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names (None for PostgreSQL, memory and URI-form databases)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:") or parsed.query.get("uri"):
        return None
    return Path(database)
