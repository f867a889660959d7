"""A live, read-only dashboard over every study in a database: ``hpsearch dashboard``.

Pages (studies, study, trial, workers, final models) are rendered on the server from the report's data and
figures and refresh themselves by polling their live JSON with ``If-None-Match``; a JSON API serves scripts
and notebooks (docs/dashboard.md). The dashboard opens the database read-only (:func:`open_readonly_store`):
no request can write.

Example::

    >>> from hpsearch.analysis.dashboard import serve
    >>> serve("postgresql+psycopg://analyst:pw@db/hpsearch", host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import logging

from hpsearch.analysis.dashboard.app import create_app
from hpsearch.analysis.dashboard.security import check_bind, is_loopback
from hpsearch.store import Store, mask_url, resolve_url
from hpsearch.store.db import make_readonly_engine, require_schema

log = logging.getLogger("hpsearch.dashboard")


def open_readonly_store(url: str | None) -> Store:
    """A store on ``url`` (or HPSEARCH_DB, or ./hpsearch.db) that cannot write: READ ONLY transactions on
    PostgreSQL, ``PRAGMA query_only`` on SQLite. The schema must be at this version.

    Example: ``open_readonly_store("sqlite:///hpsearch.db").studies()``."""
    engine = make_readonly_engine(resolve_url(url), application_name="hpsearch-dashboard")
    require_schema(engine)
    return Store(engine)


def serve(url: str | None, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
    """Serve the dashboard until interrupted. Beyond loopback a token is required (:func:`check_bind`).
    Uvicorn's access log stays off: URLs may carry the token (``?token=``).

    Example: ``serve("sqlite:///hpsearch.db", port=8080)``."""
    import uvicorn

    check_bind(host, token)
    store = open_readonly_store(url)
    where = f"[{host}]" if ":" in host else host
    print(f"hpsearch dashboard of {mask_url(store.engine.url)} on http://{where}:{port}/", flush=True)
    try:
        uvicorn.run(create_app(store, token), host=host, port=port, access_log=False, log_level="warning")
    finally:
        store.engine.dispose()


__all__ = ["check_bind", "create_app", "is_loopback", "open_readonly_store", "serve"]
