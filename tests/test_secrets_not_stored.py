"""A database password is never stored (README, security): after `study create` and a run with the password in
the URL (``?password=``), no row of any table and no file under the artifact root or the working directory
contains it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import write_tiny_study
from .test_bad_inputs import run_cli

SECRET = "Hunter2StoredNowhere"


def test_a_password_in_the_url_is_in_no_row_and_no_file(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("only a server URL carries a password")
    # The local server trusts its clients: libpq sends the password only if asked, and the commands succeed.
    url = f"{db_url}?password={SECRET}"
    monkeypatch.chdir(tmp_path)
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    art = tmp_path / "art"
    created = run_cli(["study", "create", str(path), "--db", url, "--artifacts", str(art)], capsys)
    assert created[0] == 0, created
    ran = run_cli(["run", str(path), "--db", url, "--artifacts", str(art)], capsys)
    assert ran[0] == 0, ran
    assert SECRET not in created[1] + created[2] + ran[1] + ran[2]
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            assert "trials" in tables
            for table in tables:
                rows = connection.execute(sa.text(f'SELECT CAST(t AS text) FROM "{table}" t')).scalars().all()
                assert not [row for row in rows if SECRET in row], table
            completed = connection.scalar(sa.text("SELECT count(*) FROM trials WHERE state = 'COMPLETED'"))
            assert completed == 1
    finally:
        engine.dispose()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.is_relative_to(art) for f in files)
    assert not [f for f in files if SECRET.encode() in f.read_bytes()]
