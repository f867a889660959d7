"""``hpsearch dashboard``: serve the live, read-only dashboard of every study in the database.

Example::

    hpsearch dashboard --db postgresql+psycopg://analyst:pw@db/hpsearch --port 8080
    HPSEARCH_DASHBOARD_TOKEN=... hpsearch dashboard --host 0.0.0.0
"""

from __future__ import annotations

from typing import Annotated

import typer

from hpsearch.cli.app import DbOption, app


@app.command()
def dashboard(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; beyond loopback --token is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    token: Annotated[
        str | None,
        typer.Option(envvar="HPSEARCH_DASHBOARD_TOKEN", help="Every request must carry it (see docs/dashboard.md)."),
    ] = None,
) -> None:
    """Serve a live, read-only dashboard of every study: studies, study, trial, workers, final models."""
    from hpsearch.analysis.dashboard import serve

    serve(db, host=host, port=port, token=token)
