"""Import keras (and its backend) without the backend's native start-up lines on standard error.

TensorFlow 2.21 writes its start-up lines (CUDA probing, oneDNN notices) from C++ before absl logging is
initialised, so ``TF_CPP_MIN_LOG_LEVEL`` no longer silences them (tensorflow/tensorflow#100442), and they
would bury the one error line of ``hpsearch study create``. When ``TF_CPP_MIN_LOG_LEVEL`` asks for quiet (the
CLI sets 3 unless the user chose a level), file descriptor 2 points to /dev/null while keras is imported:
Python exceptions still propagate, only native chatter during that import is dropped.

>>> import_keras_quietly()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys


def import_keras_quietly() -> None:
    """Import keras once, with native standard error closed if ``TF_CPP_MIN_LOG_LEVEL`` is 1 or more."""
    if "keras" in sys.modules:
        return
    try:
        quiet = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0) >= 1
    except ValueError:
        quiet = False
    if not quiet:
        import keras

        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
