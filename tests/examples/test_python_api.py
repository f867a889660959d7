"""The README's Python API example runs as a user would run it: a script whose hypermodel and data are
defined in it, two local worker processes, the best trial printed and promoted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hpsearch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_the_python_api_example_runs_a_study_and_promotes_its_best(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(REPO / "examples" / "python_api.py"), "--db", db_url, "--trials", "2"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    best = re.search(r"best trial (\d+): val_accuracy = ([0-9.]+)", result.stdout)
    assert best is not None, result.stdout
    assert "final model: COMPLETED" in result.stdout

    # What the script printed is what the database says, read back through the same API.
    study = hpsearch.load_study("digits_python_api", db=db_url)
    assert study.state == "COMPLETED"
    assert [t.state for t in study.trials] == ["COMPLETED", "COMPLETED"]
    stored = study.best_trial
    assert stored is not None and stored.number == int(best.group(1))
    assert f"{stored.objective:.4f}" == best.group(2)
    assert set(stored.params) == {"units", "lr"}
    frame = study.trials_dataframe()
    assert len(frame) == 2 and "param_units" in frame.columns
    curve = study.curve(stored.number)
    assert len(curve) == stored.epochs_done == 3
    assert max(values["val_accuracy"] or 0.0 for values in curve.values()) == pytest.approx(stored.objective)
