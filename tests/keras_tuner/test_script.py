"""The notebook-style Keras Tuner script runs to the end on Keras Tuner and, changed only in its import, on
hpsearch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("kt_script.py")


@pytest.mark.parametrize("impl", ["keras_tuner", "hpsearch"])
def test_the_keras_tuner_script_runs_with_either_import(impl: str, tmp_path: Path) -> None:
    env = {**os.environ, "KT_IMPL": impl, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("HPSEARCH_DB", None)  # the project directory holds the database, as Keras Tuner's
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "KT SCRIPT OK" in done.stdout
    assert "Best val_accuracy So Far" in done.stdout or (impl == "keras_tuner" and "Results summary" in done.stdout)
