"""The example studies under studies/ run as a new user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import REPO
from .test_cli import hpsearch

pytestmark = pytest.mark.slow


def test_mnist_mlp_acceptance(tmp_path: Path, db_url: str) -> None:
    result = hpsearch("run", str(REPO / "studies" / "mnist_mlp.toml"), cwd=tmp_path, db=db_url, timeout=900)
    assert result.returncode == 0, result.stderr
    trials = json.loads(hpsearch("trials", "mnist_mlp", "--json", cwd=tmp_path, db=db_url).stdout)
    assert len(trials) == 12
    assert all(t["state"] == "COMPLETED" and t["params"] for t in trials)
    best = json.loads(hpsearch("best", "mnist_mlp", "--json", cwd=tmp_path, db=db_url).stdout)["best"]
    assert best["objective"] > 0.85
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        per_trial = connection.execute(
            sa.text(
                "SELECT t.number, t.epochs_done, COUNT(DISTINCT m.epoch) FROM trials t "
                "JOIN trial_metrics m ON m.trial_id = t.id WHERE m.name = 'val_accuracy' "
                "GROUP BY t.number, t.epochs_done"
            )
        ).all()
    engine.dispose()
    assert len(per_trial) == 12
    assert all(epochs_done == epochs >= 1 for _, epochs_done, epochs in per_trial)


@pytest.mark.parametrize("name", ["digits_cnn", "titanic", "diabetes_regression", "mnist_hyperband"])
def test_example_study_runs(tmp_path: Path, name: str) -> None:
    db = f"sqlite:///{tmp_path / 'studies.db'}"
    result = hpsearch("run", str(REPO / "studies" / f"{name}.toml"), cwd=tmp_path, db=db, timeout=900)
    assert result.returncode == 0, result.stderr
    status = json.loads(hpsearch("status", name, "--json", cwd=tmp_path, db=db).stdout)[0]
    assert status["state"] == "COMPLETED"
    assert status["trials"]["FAILED"] == 0
    assert status["trials"]["COMPLETED"] == status["max_trials"]


@pytest.mark.parametrize(("name", "seeded"), [("digits_automl", 1), ("titanic_automl", 1), ("stdlib_docs_automl", 1)])
def test_automl_example_study_creates_with_autokeras_seeds(tmp_path: Path, name: str, seeded: int) -> None:
    db = f"sqlite:///{tmp_path / 'studies.db'}"
    result = hpsearch("study", "create", str(REPO / "studies" / f"{name}.toml"), cwd=tmp_path, db=db, timeout=600)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(db)
    with engine.connect() as connection:
        spec = connection.execute(sa.text("SELECT spec FROM studies WHERE name = :n"), {"n": name}).scalar_one()
    engine.dispose()
    spec = spec if isinstance(spec, dict) else json.loads(spec)
    assert len(spec["search"]["initial_trials"]) == seeded
    assert spec["automl"]["task"]
