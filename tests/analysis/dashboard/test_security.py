"""The dashboard cannot write, serves beyond loopback only with a token, and then only to who has it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from hpsearch.analysis.dashboard import check_bind, create_app, open_readonly_store
from hpsearch.errors import StoreError, UsageError
from hpsearch.store import Store

from .helpers import payload_study

READ_ONLY = r"read-only|readonly"  # PostgreSQL | SQLite
TOKEN = "a-long-random-token-0123456789"


def test_a_write_through_the_dashboards_connection_fails(store: Store, db_url: str) -> None:
    study = payload_study(store, "readonly")
    readonly = open_readonly_store(db_url)
    try:
        assert [s.name for s in readonly.studies()] == ["readonly"]
        with pytest.raises(StoreError, match=READ_ONLY):  # through the store's own paths
            readonly.set_study_state(study.id, "STOPPED")  # type: ignore[arg-type]
        for connect in (readonly.engine.begin, readonly.engine.connect):
            with pytest.raises(sa.exc.DBAPIError, match=READ_ONLY), connect() as connection:
                connection.execute(sa.text("UPDATE studies SET state = 'STOPPED'"))
                connection.commit()
        autocommit = readonly.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with autocommit as connection, pytest.raises(sa.exc.DBAPIError, match=READ_ONLY):
            connection.execute(sa.text("DELETE FROM trials"))
        assert store.study("readonly").state == "RUNNING" and len(store.trials(study.id)) == 40
    finally:
        readonly.engine.dispose()


def test_beyond_loopback_a_token_is_required() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    with pytest.raises(UsageError, match=r"--host: 0\.0\.0\.0 is not a loopback address"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UsageError, match="--token: use at least 16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)


def test_every_request_needs_the_token(store: Store, db_url: str) -> None:
    payload_study(store, "guarded")
    readonly = open_readonly_store(db_url)
    with TestClient(create_app(readonly, TOKEN)) as client:
        for path in ("/", "/api/studies", "/live/", "/static/dashboard.js", "/api/health"):
            denied = client.get(path)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer", path
            assert "guarded" not in denied.text
        assert client.get("/api/studies", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert client.get("/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).json()[0]["name"] == "guarded"
        # A browser: ?token= once, traded for an HttpOnly cookie and a redirect without the token.
        traded = client.get(f"/workers?token={TOKEN}&x=1", follow_redirects=False)
        assert traded.status_code == 303 and traded.headers["location"] == "/workers?x=1"
        assert "HttpOnly" in traded.headers["set-cookie"] and "SameSite=Strict" in traded.headers["set-cookie"]
        assert client.get("/workers").status_code == 200  # the client kept the cookie
        assert client.get("/?token=nope", follow_redirects=False).status_code == 200  # cookie still valid
        client.cookies.clear()
        assert client.get("/?token=nope", follow_redirects=False).status_code == 401
    readonly.engine.dispose()
