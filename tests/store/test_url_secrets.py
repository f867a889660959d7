"""Passwords in database URLs are masked in every form libpq accepts: ``user:pass@``, ``?password=`` and a
key/value DSN (``host=h password=x``), in printed URLs and in error messages (issue 24)."""

from __future__ import annotations

import logging
import signal
import sys

import pytest
import sqlalchemy as sa

from hpsearch.store.db import mask_url, scrub

SECRET = "Hunter2Secret"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"postgresql+psycopg://bob@db/x?password={SECRET}", "postgresql+psycopg://bob@db/x?password=***"),
        (
            f"postgresql+psycopg://bob@db/x?sslmode=require&PASSWORD={SECRET}",
            "postgresql+psycopg://bob@db/x?PASSWORD=***&sslmode=require",
        ),
        (f"postgresql+psycopg://bob:{SECRET}@db/x", "postgresql+psycopg://bob:***@db/x"),
        (f"host=db user=bob password={SECRET} dbname=x", "host=db user=bob password=*** dbname=x"),
        (f"host=db password='{SECRET} two' dbname=x", "host=db password=*** dbname=x"),
        ("sqlite:///hpsearch.db", "sqlite:///hpsearch.db"),
    ],
)
def test_mask_url_hides_every_form_of_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert SECRET not in mask_url(sa.engine.make_url(url)) if "://" in url else True


def test_scrub_removes_a_query_string_password_from_a_driver_message() -> None:
    url = f"postgresql+psycopg://bob@127.0.0.1:1/x?password={SECRET}"
    message = f'connection to server failed: password={SECRET} host=127.0.0.1 and "{SECRET}" again'
    assert scrub(message, url) == 'connection to server failed: password=*** host=127.0.0.1 and "***" again'


def test_scrub_keeps_messages_without_a_password() -> None:
    message = 'password authentication failed for user "bob"'
    assert scrub(message, "postgresql+psycopg://bob@db/x") == message


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from hpsearch import cli

    saved = sys.argv, logging.root.handlers[:], signal.getsignal(signal.SIGTERM)
    sys.argv = ["hpsearch", *argv]
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv, logging.root.handlers[:] = saved[0], saved[1]
        signal.signal(signal.SIGTERM, saved[2])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_query_string_password_is_printed_by_no_command(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("only a server URL carries a password")
    # The local server trusts its clients: libpq sends the password only if asked, and the commands succeed.
    url = f"{db_url}?password={SECRET}"
    upgraded = _cli(["db", "upgrade", "--db", url], capsys)
    assert upgraded[0] == 0, upgraded[1]
    assert "password=***" in upgraded[1]
    outputs = [upgraded, _cli(["status", "--db", url], capsys), _cli(["best", "nope", "--db", url], capsys)]
    outputs.append(_cli(["--debug", "best", "nope", "--db", url], capsys))
    for _code, text in outputs:
        assert SECRET not in text, text
    assert outputs[2][0] != 0
