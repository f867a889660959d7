"""Where the database is: plain paths and ``postgres://`` accepted, SQLite paths shown absolute, a missing
database named with exit 2, and a new database announced."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.store.urls import normalise_url

from ..conftest import write_tiny_study
from .clirun import run_cli

READING = [
    ["status"],
    ["trials", "tiny"],
    ["show", "tiny", "0"],
    ["best", "tiny"],
    ["models", "tiny"],
    ["report", "tiny"],
    ["export", "tiny", "-o", "x.csv"],
]


def test_urls_are_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalise_url("results/x.db") == f"sqlite:///{tmp_path}/results/x.db"
    assert normalise_url("x.db") == f"sqlite:///{tmp_path}/x.db"
    assert normalise_url("sqlite:///rel.db") == f"sqlite:///{tmp_path}/rel.db"
    assert normalise_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert normalise_url("postgres://bob:pw@db:5432/hp") == "postgresql+psycopg://bob:pw@db:5432/hp"
    assert normalise_url("postgresql://bob@db/hp?sslmode=require") == "postgresql+psycopg://bob@db/hp?sslmode=require"
    assert normalise_url("postgresql+psycopg://bob@db/hp") == "postgresql+psycopg://bob@db/hp"
    # Left alone: memory and URI-form SQLite, and anything that is no path (a password must never become a
    # "file name" in a message).
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x.db?mode=ro&uri=true", "not a url:hunter2@"):
        assert normalise_url(url) == url


@pytest.mark.parametrize("argv", READING, ids=lambda a: a[0])
def test_a_missing_database_names_the_file_and_exits_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_DB", raising=False)
    code, out, err = run_cli([*argv, "--db", "results/typo.db"], capsys)
    assert code == 2 and out == "", err
    assert err.strip().splitlines() == [
        f"error: {tmp_path}/results/typo.db: no such database file (give --db or set HPSEARCH_DB; "
        "`hpsearch run` or `study create` makes one)"
    ]
    # The default, from another directory: the absolute path of the hpsearch.db it looked for.
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and f"error: {tmp_path}/hpsearch.db: no such database file" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "hpsearch.db").exists()


def _user_form(db_url: str, tmp_path: Path) -> str:
    """The database as a user would type it: a plain relative path, or a postgres:// URL."""
    if db_url.startswith("sqlite"):
        return "results/study.db"
    return db_url.replace("postgresql+psycopg://", "postgres://", 1)


def test_plain_paths_and_postgres_urls_work_and_a_new_database_is_announced(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_DB", raising=False)
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    db = _user_form(db_url, tmp_path)
    (tmp_path / "results").mkdir()
    shown = f"sqlite:///{tmp_path}/results/study.db" if db_url.startswith("sqlite") else db_url

    code, out, err = run_cli(["study", "create", str(path), "--db", db], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    if db_url.startswith("sqlite"):
        assert lines[0] == f"created new database {tmp_path}/results/study.db", out
    else:
        assert lines[0] == f"created hpsearch tables in {db_url}", out
    assert lines[1].startswith(f"study tiny created in {shown} ("), out

    code, out, err = run_cli(["study", "create", str(path), "--db", db], capsys)
    assert code == 0, err
    assert "created" not in out.splitlines()[0] and "already exists" in out  # an existing database: no line

    code, out, err = run_cli(["status", "--db", db, "--json"], capsys)
    assert code == 0, err
    assert '"study": "tiny"' in out
