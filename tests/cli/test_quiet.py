"""Third-party noise stays out of the command's output: Keras' ONNX export (run by every promote) warns
about numpy's ``np.object``; hpsearch processes, and the worker and trial processes they start, do not show it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

EXPORT = "from keras.src.export.tf2onnx_lib import patch_tf2onnx; patch_tf2onnx()"


def _stderr(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_keras_onnx_export_warning_is_quiet_here_and_in_child_processes() -> None:
    assert "FutureWarning" in _stderr(EXPORT)  # what a user saw after `promote`
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {EXPORT!r}], check=True)"
    assert "FutureWarning" not in _stderr(f"import hpsearch.cli; {EXPORT}; {child}")
