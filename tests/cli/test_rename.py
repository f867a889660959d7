"""`hpsearch study rename OLD NEW`: one line for a refused name, and the study's files move with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ..conftest import write_tiny_study
from .clirun import run_cli

pytestmark = pytest.mark.slow


def _uris(db_url: str) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(sa.text("SELECT uri FROM artifacts")))
    finally:
        engine.dispose()


def _execute(db_url: str, statement: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_rename_moves_files_and_refuses_bad_names(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPSEARCH_DB", db_url)
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    code, out, err = run_cli(["run", str(path)], capsys)
    assert code == 0, err
    before = _uris(db_url)
    assert before and all("/tiny/" in uri and Path(uri).exists() for uri in before)
    (tmp_path / "other").mkdir()
    other = write_tiny_study(tmp_path / "other", name="other")
    assert run_cli(["study", "create", str(other)], capsys)[0] == 0

    for new, message in (
        ("other", "error: study other: already exists; choose another name"),
        ("a/b", "error: study name 'a/b': must be 1-100 letters, digits"),
        ("tiny", "error: study tiny: already has that name"),
    ):
        code, out, err = run_cli(["study", "rename", "tiny", new], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(message), err
    assert _uris(db_url) == before

    _execute(db_url, "UPDATE trials SET state = 'RUNNING'")
    code, out, err = run_cli(["study", "rename", "tiny", "tiny-v1"], capsys)
    assert code == 2 and "a trial is running; `hpsearch study stop` it" in err
    assert all(Path(uri).exists() for uri in _uris(db_url))  # the files moved back
    _execute(db_url, "UPDATE trials SET state = 'COMPLETED'")

    code, out, err = run_cli(["study", "rename", "tiny", "tiny-v1"], capsys)
    assert code == 0, err
    assert out.strip() == "study tiny renamed to tiny-v1"
    after = _uris(db_url)
    assert len(after) == len(before)
    assert all("/tiny-v1/" in uri and Path(uri).exists() for uri in after)
    assert run_cli(["trials", "tiny"], capsys)[0] == 2
    code, out, err = run_cli(["trials", "tiny-v1", "--json"], capsys)
    assert code == 0 and '"COMPLETED"' in out
    # The study file, edited to the new name, is the same study: already completed, nothing re-run.
    path.write_text(path.read_text().replace('name = "tiny"', 'name = "tiny-v1"'))
    code, out, err = run_cli(["run", str(path)], capsys)
    assert code == 0, err
    assert "study tiny-v1 is already completed" in out
